"""The result document the bot receives, and the short termination message Kubernetes shows."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

from sandbox.changeset import Changeset

MAX_SUMMARY = 20_000  # well under a check run's 65,535 characters, with room for the bot's text
MAX_TITLE = 72
TERMINATION_LOG = "/dev/termination-log"
MAX_TERMINATION_BYTES = 4096  # the kubelet keeps no more than this


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def commit_message(summary: str | None, run_id: int) -> str:
    """A commit message: a title from the summary's first line, the rest as the body."""
    lines = (summary or "").strip().splitlines()
    title, body = "", ""
    for index, line in enumerate(lines):
        # Markdown headings and bullets make poor commit titles; keep their words.
        first = re.sub(r"^[#>*\-\s]+", "", line).strip().strip("*_`").strip()
        if first:
            title = _clip(first, MAX_TITLE)
            rest = "\n".join(lines[index + 1:]).strip()
            # A clipped title loses words: keep the whole line in the body.
            body = rest if title == first else f"{first}\n\n{rest}".strip()
            break
    title = title or f"Apply the changes of agentbot run {run_id}"
    if body:
        return f"{title}\n\n{_clip(body, 4000)}\n\nAgentbot-Run: {run_id}\n"
    return f"{title}\n\nAgentbot-Run: {run_id}\n"


def succeeded(changeset: Changeset, summary: str | None, run_id: int,
              stats: dict[str, Any]) -> dict[str, Any]:
    """The result of a run that finished: `succeeded`, or `no_changes` when nothing changed."""
    status = "succeeded" if changeset.changes else "no_changes"
    if not summary:
        summary = (f"The agent changed {len(changeset.changes)} files." if changeset.changes
                   else "The agent finished without changing any file.")
    return {
        "status": status,
        "summary": _clip(summary, MAX_SUMMARY),
        "commit_message": commit_message(summary, run_id) if changeset.changes else "",
        "changes": changeset.changes,
        "stats": {**stats, **changeset.stats},
    }


def failed(summary: str, stats: dict[str, Any],
           partial: Changeset | None = None) -> dict[str, Any]:
    """The result of a run that failed at some step; the summary says which and why. An agent
    that stopped half-way leaves its changes so far in `partial`: they come along, marked."""
    if partial is None or not partial.changes:
        return {"status": "failed", "summary": _clip(summary, MAX_SUMMARY),
                "commit_message": "", "changes": [], "stats": stats}
    # No commit message: the summary says what went wrong, not what changed; the bot writes
    # the partial commit's message.
    return {"status": "failed", "summary": _clip(summary, MAX_SUMMARY), "commit_message": "",
            "changes": partial.changes, "stats": {**stats, **partial.stats, "partial": True}}


def write_termination_message(text: str) -> None:
    """Leave a short reason where Kubernetes (or the local executor) looks for it.

    `AGENTBOT_TERMINATION_LOG` names the file; by default /dev/termination-log is written
    only when the kubelet created it, so running outside Kubernetes writes nothing.
    """
    path = os.environ.get("AGENTBOT_TERMINATION_LOG")
    if not path:
        if not os.path.exists(TERMINATION_LOG):
            return
        path = TERMINATION_LOG
    data = text.encode("utf-8")[:MAX_TERMINATION_BYTES].decode("utf-8", errors="ignore")
    # A reason we cannot leave is no reason to fail differently.
    with contextlib.suppress(OSError):
        Path(path).write_text(data, encoding="utf-8")
