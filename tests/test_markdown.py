"""Markdown helpers: code spans for any backticks, did-you-mean hints, clipping to limits."""

from __future__ import annotations

import pytest

from bot.markdown import COMMENT_MAX_CHARS, clip, closest, code_span


@pytest.mark.parametrize(("text", "span"), [
    ("agent", "`agent`"),
    ("a`b", "``a`b``"),
    ("``x``", "``` ``x`` ```"),  # a span that starts or ends with a backtick is padded
    ("`", "`` ` ``"),
])
def test_code_span_holds_any_backticks(text: str, span: str) -> None:
    assert code_span(text) == span


def test_code_span_cuts_long_text_with_an_ellipsis() -> None:
    assert code_span("x" * 50, 10) == "`" + "x" * 9 + "…`"


def test_closest_suggests_only_a_close_word() -> None:
    assert closest("cluade", ("claude", "codex")) == "claude"
    assert closest("zzz", ("claude", "codex")) is None


def test_clip_keeps_short_bodies_and_says_when_it_cut() -> None:
    assert clip("short") == "short"
    long = "y" * (COMMENT_MAX_CHARS + 10)
    clipped = clip(long)
    assert len(clipped) == COMMENT_MAX_CHARS and clipped.endswith("… (truncated)")
    assert len(clip(long, 100)) == 100
