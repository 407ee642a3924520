"""Drive wrk with bench/load.lua and read back its one-line JSON summary."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA_SCRIPT = Path(__file__).resolve().parent / "load.lua"
# wrk calls request() once on its first thread to check for pipelining; that id is never sent.
VERIFY_CALLS = 1


class LoadError(RuntimeError):
    """wrk is missing, failed, or printed no summary."""


@dataclass(frozen=True)
class Load:
    """What one wrk run sent and got back."""

    prefix: str
    seconds: float
    completed: int  # requests answered within the run
    sent: int  # requests written, answered or not
    statuses: dict[int, int]
    errors: dict[str, int]
    latency_ms: dict[str, float]

    @property
    def in_flight(self) -> int:
        """Requests written but unanswered when wrk stopped (the server may still store them)."""
        return max(0, self.sent - VERIFY_CALLS - self.completed)

    def rate(self, status: int) -> float:
        """Answers with this status per second."""
        return self.statuses.get(status, 0) / self.seconds


def parse_summary(stdout: str, prefix: str) -> Load:
    """The Load from wrk's output: the last line that is our script's JSON summary."""
    for line in reversed(stdout.splitlines()):
        if line.startswith('{"duration_us"'):
            data: dict[str, Any] = json.loads(line)
            break
    else:
        raise LoadError("wrk printed no summary line (did the Lua script fail?)")
    return Load(
        prefix=prefix,
        seconds=data["duration_us"] / 1e6,
        completed=data["requests"],
        sent=data["sent"],
        statuses={int(k): v for k, v in data["statuses"].items()},
        errors=data["errors"],
        latency_ms={k: v / 1000 for k, v in data["latency_us"].items()},
    )


def run_wrk(url: str, *, body_file: Path, signature: str, prefix: str, event: str,
            seconds: int, connections: int, threads: int, cpu: str,
            timeout_seconds: int = 10) -> Load:
    """POST the signed body to `url` from `connections` keep-alive connections, pinned to `cpu`."""
    if seconds < 1 or seconds != int(seconds):
        raise LoadError(f"wrk takes whole seconds, not {seconds:g}")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise LoadError("wrk is not installed (Debian: apt-get install wrk)")
    argv = [
        "taskset", "-c", cpu, wrk,
        f"--threads={threads}", f"--connections={connections}",
        f"--duration={int(seconds)}s", f"--timeout={timeout_seconds}s",
        f"--script={LUA_SCRIPT}", url,
        "--", str(body_file), signature, prefix, event,
    ]
    done = subprocess.run(argv, capture_output=True, text=True,
                          timeout=seconds + timeout_seconds + 30, check=False)
    if done.returncode != 0:
        raise LoadError(f"wrk exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    return parse_summary(done.stdout, prefix)
