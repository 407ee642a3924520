"""The changeset: every path that differs from the base commit, binary-safe, with its mode."""

from __future__ import annotations

import base64
import posixpath
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.checkout import git_env, safe_git

REGULAR, EXECUTABLE, SYMLINK, GITLINK = "100644", "100755", "120000", "160000"
ALLOWED_MODES = frozenset({REGULAR, EXECUTABLE, SYMLINK})
GIT_TIMEOUT_SECONDS = 300


class ChangesetError(Exception):
    """The changes cannot be turned into a result; the message says which path and why."""


@dataclass
class Changeset:
    """The result's `changes` and `stats`."""

    changes: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)


def check_path(path: str) -> None:
    """Refuse a path that is absolute, climbs out of the repository or reaches into .git."""
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ChangesetError(f"{path!r} is not a plain path inside the repository")
    if any(part.lower() == ".git" for part in parts):
        raise ChangesetError(f"{path!r} is inside a .git directory")


def check_symlink(path: str, target: bytes) -> None:
    """Refuse a symlink whose target is absolute or leads outside the repository."""
    try:
        text = target.decode("utf-8")
    except UnicodeDecodeError:
        raise ChangesetError(f"symlink {path!r} has a target that is not UTF-8") from None
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), text))
    if text.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise ChangesetError(f"symlink {path!r} points outside the repository ({text!r})")


def _git(workspace: Path, env: Mapping[str, str], *args: str, stdin: bytes | None = None
         ) -> bytes:
    try:
        # GIT_DIR and GIT_WORK_TREE override whatever the agent wrote into .git/config
        # (core.worktree pointing at /, say): the changeset is of the workspace, nothing else.
        pinned = {**git_env(env), "GIT_DIR": str(workspace / ".git"),
                  "GIT_WORK_TREE": str(workspace)}
        done = subprocess.run(
            [*safe_git(workspace), *args], cwd=workspace, env=pinned, input=stdin,
            capture_output=True, timeout=GIT_TIMEOUT_SECONDS, check=False,
        )
    except subprocess.TimeoutExpired:
        raise ChangesetError(f"git {args[0]} took longer than {GIT_TIMEOUT_SECONDS}s") from None
    if done.returncode:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise ChangesetError(f"git {args[0]} failed: {' | '.join(message) or 'no output'}")
    return done.stdout


def _raw_entries(output: bytes) -> list[tuple[str, str, str, str, str]]:
    """(old_mode, new_mode, new_sha, status, path) from `git diff --raw -z` output."""
    fields = output.split(b"\0")
    entries = []
    index = 0
    while index + 1 < len(fields) and fields[index]:
        meta = fields[index].decode("ascii").lstrip(":").split(" ")
        try:
            path = fields[index + 1].decode("utf-8")
        except UnicodeDecodeError:
            raise ChangesetError(f"path {fields[index + 1]!r} is not UTF-8") from None
        old_mode, new_mode, _old_sha, new_sha, status = meta
        entries.append((old_mode, new_mode, new_sha, status[0], path))
        index += 2
    return entries


def _read_blobs(workspace: Path, env: Mapping[str, str], shas: list[str]) -> dict[str, bytes]:
    if not shas:
        return {}
    output = _git(workspace, env, "cat-file", "--batch", stdin="".join(f"{s}\n" for s in shas)
                  .encode())
    blobs: dict[str, bytes] = {}
    position = 0
    for _ in shas:
        header_end = output.index(b"\n", position)
        sha, kind, size = output[position:header_end].decode("ascii").split(" ")
        if kind != "blob":
            raise ChangesetError(f"object {sha} is a {kind}, not a file")
        start = header_end + 1
        blobs[sha] = output[start:start + int(size)]
        position = start + int(size) + 1  # the content is followed by a newline
    return blobs


def _numstat(workspace: Path, env: Mapping[str, str], base_sha: str) -> tuple[int, int]:
    output = _git(workspace, env, "diff", "--cached", "--numstat", "-z", "--no-renames",
                  "--no-ext-diff", "--no-textconv", base_sha)
    additions = deletions = 0
    for record in output.split(b"\0"):
        added, _, rest = record.partition(b"\t")
        removed, _, _path = rest.partition(b"\t")
        if added.isdigit() and removed.isdigit():  # binary files show "-"
            additions += int(added)
            deletions += int(removed)
    return additions, deletions


def collect(workspace: Path, base_sha: str, *, env: Mapping[str, str], max_files: int,
            max_bytes: int) -> Changeset:
    """Stage everything the agent left and describe it relative to `base_sha`.

    The index is compared with the base commit (not HEAD), so commits the agent made are
    included; renames come out as a deletion plus an addition.
    """
    _git(workspace, env, "add", "--all")
    raw = _git(workspace, env, "diff", "--cached", "--raw", "-z", "--no-renames",
               "--no-ext-diff", "--no-textconv", "--abbrev=64", base_sha)
    entries = _raw_entries(raw)
    if len(entries) > max_files:
        raise ChangesetError(f"{len(entries)} files changed; the limit is {max_files}")
    wanted: list[str] = []
    for old_mode, new_mode, new_sha, status, path in entries:
        check_path(path)
        if GITLINK in (old_mode, new_mode):
            raise ChangesetError(f"{path!r} is a submodule (or a nested repository); "
                                 "submodule changes are not allowed")
        if status != "D":
            if new_mode not in ALLOWED_MODES:
                raise ChangesetError(f"{path!r} has unsupported mode {new_mode}")
            wanted.append(new_sha)
    blobs = _read_blobs(workspace, env, sorted(set(wanted)))
    total = sum(len(blob) for blob in blobs.values())
    if total > max_bytes:
        raise ChangesetError(f"the changed files hold {total} bytes; the limit is {max_bytes}")
    changeset = Changeset()
    for _old_mode, new_mode, new_sha, status, path in entries:
        if status == "D":
            changeset.changes.append({"path": path, "deleted": True})
            continue
        content = blobs[new_sha]
        if new_mode == SYMLINK:
            check_symlink(path, content)
        changeset.changes.append({"path": path, "mode": new_mode,
                                  "content_b64": base64.b64encode(content).decode("ascii")})
    additions, deletions = _numstat(workspace, env, base_sha)
    changeset.stats = {"files_changed": len(entries), "additions": additions,
                       "deletions": deletions, "bytes": total}
    return changeset
