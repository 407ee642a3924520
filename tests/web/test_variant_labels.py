"""The run pages name a variant of a group as such, in the header and in the list."""

from __future__ import annotations

from types import SimpleNamespace

from bot.web.pages import variant_of


def test_a_variant_is_named_with_its_group_size() -> None:
    variant = SimpleNamespace(variant=2, config={"variants": [["claude", None]] * 4})
    assert variant_of(variant) == " · variant 2 of 4"
    assert variant_of(SimpleNamespace(variant=None, config={})) == ""
    assert variant_of(SimpleNamespace(variant=3, config=None)) == " · variant 3 of 3"
