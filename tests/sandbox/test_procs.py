"""Child processes of the runner: whole long lines, deadlines, and nothing left behind."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sandbox.procs import MAX_LINE_BYTES, run_streaming


def run(code: str, tmp_path: Path, deadline: float = 30.0) -> tuple[list[tuple[str, str]], int]:
    lines: list[tuple[str, str]] = []
    done = run_streaming([sys.executable, "-c", code], cwd=tmp_path, env={"PATH": "/usr/bin"},
                         deadline=time.monotonic() + deadline,
                         on_line=lambda stream, text: lines.append((stream, text)))
    return lines, done.returncode or 0


def test_long_lines_arrive_whole_and_overlong_ones_are_cut(tmp_path: Path) -> None:
    lines, code = run("import sys; print('x' * 200_000); print('y' * 5_000_000);"
                      "sys.stderr.write('tail without newline')", tmp_path)

    assert code == 0
    stdout = [text for stream, text in lines if stream == "stdout"]
    assert stdout == ["x" * 200_000, "y" * MAX_LINE_BYTES]
    assert ("stderr", "tail without newline") in lines


def test_the_deadline_stops_the_process_and_says_so(tmp_path: Path) -> None:
    began = time.monotonic()
    done = run_streaming([sys.executable, "-c", "import time; print('up', flush=True); "
                          "time.sleep(60)"], cwd=tmp_path, env={}, on_line=lambda *_: None,
                         deadline=time.monotonic() + 0.5, kill_grace=1.0)

    assert done.timed_out and done.returncode == -15
    assert done.tail == ["up"]
    assert time.monotonic() - began < 5
