"""Child processes with streamed output and a wall-clock limit enforced on the process group."""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CHUNK_BYTES = 64 * 1024
# JSON stream lines can be long (a whole file in a tool result); past this they are cut.
MAX_LINE_BYTES = 4 * 1024 * 1024
KILL_GRACE_SECONDS = 10.0  # between SIGTERM and SIGKILL
DRAIN_SECONDS = 2.0  # how long to read output left in pipes after the process exited

# Process groups started by this runner and maybe still alive; the SIGTERM handler and the
# end of the run kill them, so nothing outlives the sandbox.
_groups: set[int] = set()
_groups_lock = threading.Lock()


@dataclass
class ProcessResult:
    """How a child process ended."""

    returncode: int | None
    timed_out: bool
    duration: float
    tail: list[str] = field(default_factory=list)  # last lines of output, for summaries


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def kill_all_groups() -> None:
    """SIGKILL every process group this runner started (setup leftovers, agent helpers)."""
    with _groups_lock:
        groups = list(_groups)
        _groups.clear()
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)


def _pump(stream: IO[bytes], name: str, lines: queue.Queue[tuple[str, str | None]]) -> None:
    line = bytearray()
    try:
        while chunk := stream.readline(CHUNK_BYTES):
            line += chunk[: max(0, MAX_LINE_BYTES - len(line))]
            if chunk.endswith(b"\n"):
                lines.put((name, line.decode("utf-8", errors="replace").rstrip("\r\n")))
                line = bytearray()
        if line:
            lines.put((name, line.decode("utf-8", errors="replace")))
    except (OSError, ValueError):
        pass  # the pipe was closed under us when the run gave up on it
    finally:
        lines.put((name, None))


def run_streaming(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    deadline: float,
    on_line: Callable[[str, str], None],
    stdin_path: Path | None = None,
    kill_group_after: bool = True,
    kill_grace: float = KILL_GRACE_SECONDS,
) -> ProcessResult:
    """Run `argv` in a new process group; call `on_line(stream, text)` for each output line.

    `deadline` is a `time.monotonic()` value: past it the group gets SIGTERM, then SIGKILL
    after `kill_grace` seconds. With `kill_group_after`, whatever the command left running
    in its group is killed when it exits (setup keeps its background services instead).
    Raises OSError when the program cannot be started.
    """
    started = time.monotonic()
    stdin: IO[bytes] | int = subprocess.DEVNULL
    if stdin_path is not None:
        stdin = open(stdin_path, "rb")  # noqa: SIM115 - closed below, once the child has it
    try:
        process = subprocess.Popen(
            argv, cwd=cwd, env=dict(env), stdin=stdin, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, process_group=0, close_fds=True,
        )
    finally:
        if not isinstance(stdin, int):
            stdin.close()
    pgid = process.pid
    with _groups_lock:
        _groups.add(pgid)
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    assert process.stdout is not None and process.stderr is not None
    for stream, name in ((process.stdout, "stdout"), (process.stderr, "stderr")):
        threading.Thread(target=_pump, args=(stream, name, lines), daemon=True).start()
    tail: collections.deque[str] = collections.deque(maxlen=20)
    open_streams = 2
    finished: set[str] = set()
    timed_out = False
    exited_at: float | None = None
    while open_streams:
        now = time.monotonic()
        if not timed_out and now >= deadline:
            timed_out = True
            _terminate(process, pgid, kill_grace)
            exited_at = time.monotonic()
        if exited_at is None and process.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > DRAIN_SECONDS:
            break  # a background child still holds the pipes; stop reading them
        wait = 0.2 if exited_at is not None else max(0.01, min(0.2, deadline - now))
        try:
            name, text = lines.get(timeout=wait)
        except queue.Empty:
            continue
        if text is None:
            open_streams -= 1
            finished.add(name)
            continue
        tail.append(text)
        on_line(name, text)
    returncode = process.wait()
    if kill_group_after or timed_out:
        _signal_group(pgid, signal.SIGKILL)
        with _groups_lock:
            _groups.discard(pgid)
    for pipe, name in ((process.stdout, "stdout"), (process.stderr, "stderr")):
        # A pipe still held by a background child stays with its reader thread: closing it
        # here would wait on the lock that the blocked reader holds.
        if name in finished:
            pipe.close()
    return ProcessResult(returncode=returncode, timed_out=timed_out,
                         duration=time.monotonic() - started, tail=list(tail))


def _terminate(process: subprocess.Popen[bytes], pgid: int, grace: float) -> None:
    _signal_group(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    # Children may ignore SIGTERM even when the leader obeyed it.
    _signal_group(pgid, signal.SIGKILL)
