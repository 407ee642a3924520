"""Split each delivery's time to its 202 into its batch's commit and the rest, per phase.

    python -m bench.run_pages --duration 60 --sends-file /tmp/sends --commit-file /tmp/commits
    python -m bench.run_pages_split /tmp/sends /tmp/commits

The sends file holds both phases (without viewers, then with), a gap of a few seconds between
them; each delivery is matched with the commit that ended nearest its answer (within 20 ms).
"""

from __future__ import annotations

import bisect
import sys


def read(path: str) -> list[list[float]]:
    with open(path, encoding="utf-8") as lines:
        return [[float(field) for field in line.split()] for line in lines if line.strip()]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def split(sends: list[list[float]], commits: list[list[float]]) -> list[dict[str, float]]:
    breaks = [i for i in range(1, len(sends)) if sends[i][0] - sends[i - 1][0] > 2]
    phases = [sends[:breaks[0]], sends[breaks[0]:]] if breaks else [sends]
    ends = [commit[0] for commit in commits]
    report = []
    for phase in phases:
        own, rest = [], []
        for wall, took in phase:
            first = bisect.bisect_left(ends, wall - 0.02)
            near = [c for c in commits[first:first + 50] if abs(c[0] - wall) <= 0.02]
            if not near:
                continue
            commit = min(near, key=lambda c: abs(c[0] - wall))[2]
            own.append(commit)
            rest.append(took - commit)
        report.append({"deliveries": len(own),
                       "commit_p50_ms": round(percentile(own, 50), 2),
                       "commit_p99_ms": round(percentile(own, 99), 2),
                       "rest_p50_ms": round(percentile(rest, 50), 2),
                       "rest_p99_ms": round(percentile(rest, 99), 2),
                       "rest_max_ms": round(max(rest), 2)})
    return report


if __name__ == "__main__":
    for name, row in zip(("without viewers", "with viewers"),
                         split(read(sys.argv[1]), read(sys.argv[2])), strict=False):
        print(name, row)
