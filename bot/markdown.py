"""Markdown that agentbot writes on GitHub: code spans, did-you-mean hints, clipped bodies."""

from __future__ import annotations

import difflib
import re

# GitHub refuses a comment body over this many characters.
COMMENT_MAX_CHARS = 65_536
# How close a misspelling must be to a known word before a reply suggests that word.
SUGGESTION_CUTOFF = 0.6

_INLINE_CODE = re.compile(r"`+")


def code_span(text: str, limit: int | None = None) -> str:
    """Text as one inline code span, whatever backticks it holds; cut to limit characters."""
    if limit is not None and len(text) > limit:
        text = text[:limit - 1] + "…"
    longest = max((len(m) for m in _INLINE_CODE.findall(text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def closest(word: str, choices: list[str] | tuple[str, ...],
            cutoff: float = SUGGESTION_CUTOFF) -> str | None:
    """The choice a misspelt `word` most likely meant, or None when none is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=cutoff)
    return close[0] if close else None


def clip(body: str, limit: int = COMMENT_MAX_CHARS) -> str:
    """Trim a body to GitHub's limit, saying so."""
    if len(body) <= limit:
        return body
    note = "\n\n… (truncated)"
    return body[: limit - len(note)] + note
