"""The benchmark's rows, their Markdown tables and the verdict against the issue's target."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadgen import Load
from bench.servers import PROBOT_DIR

# The bar: at least 1.5x Probot's deliveries/s with a p99 no higher than Probot's.
THROUGHPUT_FACTOR = 1.5


@dataclass
class Row:
    """One measurement of one server, and the storage check."""

    target: str  # probot | agentbot-sqlite | agentbot-postgres
    store: str
    ok_status: int
    load: Load
    server_cpu: float  # share of one core the server process used while measured
    other_cpu: float  # busy share of the server's core not spent by the server (noise)
    accepted: int = 0  # ok answers over warm-up and measurement
    in_flight: int = 0  # written but unanswered when wrk stopped
    stored: int | None = None  # rows in `deliveries` with this row's ids (agentbot only)
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.load.rate(self.ok_status)

    @property
    def p99(self) -> float:
        return self.load.latency_ms["p99"]


def cpu_busy(cpus: set[int]) -> tuple[float, float]:
    """(busy, total) clock-tick seconds of these CPUs since boot, from /proc/stat."""
    busy = total = 0.0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [int(t) for t in ticks]
        idle = values[3] + values[4]  # idle + iowait
        busy += sum(values) - idle
        total += sum(values)
    hz = os.sysconf("SC_CLK_TCK")
    return busy / hz, total / hz


def table(rows: list[Row]) -> str:
    """Every measurement as a Markdown table."""
    lines = [
        "| server | store | deliveries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
        "| server CPU | other CPU | accepted | stored | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lat = r.load.latency_ms
        stored = "-" if r.stored is None else f"{r.stored:,}"
        lines.append(
            f"| {r.target} | {r.store} | {r.rate:,.0f} | {lat['p50']:.2f} | {lat['p90']:.2f} "
            f"| {lat['p99']:.2f} | {lat['p999']:.2f} | {lat['max']:.1f} | {r.server_cpu:.0%} "
            f"| {r.other_cpu:.0%} | {r.accepted:,} | {stored} | {'; '.join(r.problems) or 'ok'} |")
    return "\n".join(lines)


def medians(rows: list[Row]) -> dict[str, tuple[float, float]]:
    """Per target: the median deliveries/s and the median p99 over its repetitions."""
    out: dict[str, tuple[float, float]] = {}
    for target in dict.fromkeys(r.target for r in rows):
        mine = [r for r in rows if r.target == target]
        out[target] = (statistics.median(r.rate for r in mine),
                       statistics.median(r.p99 for r in mine))
    return out


def verdicts(rows: list[Row]) -> list[str]:
    """Each agentbot target against the issue's bar, from medians, relative to Probot."""
    figures = medians(rows)
    if "probot" not in figures or figures["probot"][0] == 0:
        return []
    peer_rate, peer_p99 = figures["probot"]
    out = []
    for target, (rate, p99) in figures.items():
        if target == "probot":
            continue
        factor = rate / peer_rate
        if not target.startswith("agentbot"):
            out.append(f"{target}: {rate:,.0f}/s = {factor:.2f}x Probot, p99 {p99:.2f} ms "
                       "(stores nothing: the ceiling for an aiohttp intake here)")
            continue
        clean = not any(r.problems for r in rows if r.target == target)
        met = factor >= THROUGHPUT_FACTOR and p99 <= peer_p99 and clean
        out.append(f"{target}: {rate:,.0f}/s = {factor:.2f}x Probot's {peer_rate:,.0f}/s "
                   f"(needs {THROUGHPUT_FACTOR}x), p99 {p99:.2f} ms vs Probot's "
                   f"{peer_p99:.2f} ms: target {'met' if met else 'MISSED'}")
    return out


def environment() -> dict[str, str]:
    """What the figures were measured on."""
    def first_line(*argv: str) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError:
            return "missing"
        lines = (done.stdout or done.stderr).strip().splitlines()
        return lines[0] if lines else "unknown"

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    probot_pkg = PROBOT_DIR / "node_modules" / "probot" / "package.json"
    probot_version = (json.loads(probot_pkg.read_text())["version"]
                      if probot_pkg.is_file() else "not installed")
    commit = first_line("git", "-C", str(PROBOT_DIR), "rev-parse", "--short", "HEAD")
    return {"commit": commit, "cpu": f"{cpu} x{os.cpu_count()}", "kernel": platform.release(),
            "python": platform.python_version(), "node": first_line("node", "--version"),
            "probot": probot_version, "wrk": " ".join(first_line("wrk", "-v").split()[:2]),
            "load average": " ".join(Path("/proc/loadavg").read_text().split()[:3])}
