"""Every process of a session, found and signalled through /proc (pid reuse taken into account)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the third (state) on; None when there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()  # the command name before it may hold spaces


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks after boot): with the pid, an identity."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def alive(pid: int, ticks: int) -> bool:
    """True while the process `pid` that started at `ticks` exists and is not a zombie."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == ticks


def members(sid: int) -> list[int]:
    """The live processes whose session id is `sid`."""
    found = []
    for entry in os.listdir("/proc"):
        fields = stat_fields(int(entry)) if entry.isdigit() else None
        if fields is not None and fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry))
    return found


def signal_session(leader: int, ticks: int, signum: int) -> bool:
    """Send `signum` to every process of the session `leader` started; False if none is left.

    A leader pid that now names a younger process means the pid was reused: that session is
    someone else's and is left alone. A dead leader's session may still hold its children.
    """
    fields = stat_fields(leader)
    if fields is not None and int(fields[19]) != ticks:
        return False
    pids = members(leader)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
    return bool(pids)
