"""A result's changed files as a diff against the run's base commit, as the page shows them."""

from __future__ import annotations

import base64
import binascii
import difflib
import html
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import gidgethub

from bot.redact import redact

log = logging.getLogger(__name__)

MAX_FILES = 40  # shown with their diff; the rest are listed
MAX_DIFF_LINES = 600  # per file
MAX_FILE_BYTES = 512 * 1024  # larger files are named, not diffed
CACHED_RUNS = 200

BaseReader = Callable[[str], Awaitable[bytes | None]]


def _text(data: bytes | None) -> list[str] | None:
    """The file's lines, or None for a binary or oversized file."""
    if data is None:
        return []
    if len(data) > MAX_FILE_BYTES or b"\0" in data[:8192]:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Masked whole, before it is cut into lines: a key spans many.
    return redact(text).splitlines()


def _diff(path: str, old: list[str] | None, new: list[str] | None) -> tuple[str, int, int]:
    """(html, additions, deletions) of one file."""
    if old is None or new is None:
        return '<p class="muted">Binary or large file; not shown.</p>', 0, 0
    lines = list(difflib.unified_diff(old, new, f"a/{path}", f"b/{path}", n=3, lineterm=""))[2:]
    adds = sum(1 for line in lines if line.startswith("+"))
    dels = sum(1 for line in lines if line.startswith("-"))
    shown = []
    for line in lines[:MAX_DIFF_LINES]:
        css = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx")
        shown.append(f'<span class="{css}">{html.escape(line)}</span>')
    if len(lines) > MAX_DIFF_LINES:
        shown.append(f'<span class="hunk">… {len(lines) - MAX_DIFF_LINES:,} more lines</span>')
    if not shown:
        return '<p class="muted">Only the mode changed.</p>', 0, 0
    # Each line is a block of its own (run.css), so no newline goes between them.
    return '<pre class="diff">' + "".join(shown) + "</pre>", adds, dels


async def files_html(result: dict[str, Any], read_base: BaseReader | None) -> str:
    """The changed files, each folded with its diff (against the base when it can be read)."""
    changes = [c for c in result.get("changes") or [] if isinstance(c, dict) and c.get("path")]
    if not changes:
        return ""
    blocks = []
    for index, change in enumerate(changes):
        path = str(change["path"])
        label = html.escape(redact(path))
        if index >= MAX_FILES:
            blocks.append(f'<li class="file"><span class="mono">{label}</span></li>')
            continue
        old: bytes | None = None
        missing_base = read_base is None  # then "added" cannot be told from "changed"
        if read_base is not None:
            try:
                old = await read_base(path)
            except Exception as exc:  # noqa: BLE001 - the page shows the new side only then
                log.info("could not read the base of a changed file (%s)", type(exc).__name__)
                missing_base = True
        if change.get("deleted"):
            new_lines: list[str] | None = []
            tag = "deleted"
        else:
            try:
                content = base64.b64decode(str(change.get("content_b64") or ""), validate=True)
            except (binascii.Error, ValueError):
                content = b""
            new_lines = _text(content)
            tag = "added" if old is None and not missing_base else "changed"
        body, adds, dels = _diff(path, _text(old), new_lines)
        counts = f'<span class="add">+{adds}</span> <span class="del">−{dels}</span>'
        blocks.append(f'<li class="file"><details{" open" if index < 5 else ""}><summary>'
                      f'<span class="mono">{label}</span> <span class="tag">{tag}</span> '
                      f'{counts}</summary>{body}</details></li>')
    return (f'<div class="files"><h3>Changed files ({len(changes)})</h3><ul>'
            + "".join(blocks) + "</ul></div>")


def github_base_reader(gh: Any, repo_full_name: str, base_sha: str) -> BaseReader:
    """Reads a file of the base commit with the App's installation token (None: no file)."""
    owner, _, repo = repo_full_name.partition("/")

    async def read(path: str) -> bytes | None:
        try:
            found = await gh.getitem("/repos/{owner}/{repo}/contents/{+path}{?ref}",
                                     {"owner": owner, "repo": repo, "path": path,
                                      "ref": base_sha})
        except gidgethub.BadRequest as exc:
            if exc.status_code == 404:
                return None
            raise
        if not isinstance(found, dict) or found.get("encoding") != "base64":
            raise ValueError("not a file GitHub hands out whole")
        return base64.b64decode(found.get("content") or "")

    return read


class FilesCache:
    """Rendered changes of finished runs (their result no longer changes)."""

    def __init__(self) -> None:
        self._rendered: OrderedDict[int, str] = OrderedDict()

    def get(self, run_id: int) -> str | None:
        found = self._rendered.get(run_id)
        if found is not None:
            self._rendered.move_to_end(run_id)
        return found

    def put(self, run_id: int, rendered: str) -> None:
        self._rendered[run_id] = rendered
        while len(self._rendered) > CACHED_RUNS:
            self._rendered.popitem(last=False)
