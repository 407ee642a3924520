"""Run records of the local executor: what survives a restart of the bot, kept on disk."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunRecord:
    """Enough to find, judge and stop a local sandbox after the bot restarted."""

    run_id: int
    pid: int  # of the wrapper shell, which leads the sandbox's session
    start_ticks: int  # /proc start time, so a reused pid is not mistaken for ours
    run_dir: str
    deadline: float  # wall clock (epoch seconds)
    timeout_seconds: int
    # The loopback endpoints its relay sockets carry ([host, port] lists), when the sandbox
    # has a network namespace of its own; a restarted bot serves them again.
    relay: list[list[str | int]] | None = None

    def exit_code(self) -> int | None:
        """The runner's exit code as the wrapper shell recorded it; None if it did not."""
        text = _read(Path(self.run_dir) / "exit-code").strip()
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        digits = text.removeprefix("-")
        return int(text) if digits.isascii() and digits.isdigit() else None

    def termination_message(self) -> str:
        """Why the runner stopped, in its own words (at most 4096 bytes, as in Kubernetes)."""
        return _read(Path(self.run_dir) / "termination-log")[:4096].strip()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


class RunStore:
    """One JSON file per run in the state directory, written atomically (blocking calls)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    def path(self, run_id: int) -> Path:
        """The record file of a run."""
        return self.state_dir / f"run-{int(run_id)}.json"

    def save(self, record: RunRecord) -> None:
        """Write (or replace) a run's record."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.path(record.run_id).with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(record)), encoding="utf-8")
        temporary.replace(self.path(record.run_id))

    def load(self, run_id: int) -> RunRecord | None:
        """A run's record; None when there is none or it cannot be read."""
        try:
            return RunRecord(**json.loads(self.path(run_id).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def load_all(self) -> list[RunRecord]:
        """Every readable record."""
        ids = (p.stem.removeprefix("run-") for p in self.state_dir.glob("run-*.json"))
        return [r for r in (self.load(int(i)) for i in ids if i.isdigit()) if r is not None]

    def remove(self, run_id: int) -> None:
        """Forget a run."""
        self.path(run_id).unlink(missing_ok=True)
