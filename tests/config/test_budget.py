"""Budgets and the price table: parsing, caps, the defaults and an operator's own file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config.budget import (
    Budget,
    Price,
    PriceTable,
    PriceTableError,
    Spend,
    default_prices,
    format_dollars,
    parse_budget,
)
from bot.config.settings import Settings, load_settings


@pytest.mark.parametrize(("text", "budget"), [
    ("$3", Budget(dollars=3.0)),
    ("$ 0.25", Budget(dollars=0.25)),
    ("3 USD", Budget(dollars=3.0)),
    ("2 dollars", Budget(dollars=2.0)),
    ("2M tokens", Budget(tokens=2_000_000)),
    ("500k", Budget(tokens=500_000)),
    ("1 token", Budget(tokens=1)),
    ("$3, 2M tokens", Budget(dollars=3.0, tokens=2_000_000)),
    ("2m, $1", Budget(dollars=1.0, tokens=2_000_000)),
])
def test_budget_forms(text: str, budget: Budget) -> None:
    assert parse_budget(text) == budget


@pytest.mark.parametrize(("text", "message"), [
    ("", "is not a budget"), ("$", "is not a budget"), ("-3", "is not a budget"),
    ("$3,", "is not a budget"), ("3 euros", "is not a budget"), ("$0.00", "more than zero"),
    ("2k, 3k", "names tokens twice"), ("$1, $2", "names dollars twice"),
    ("2000000M", "more than the largest budget"), ("nan", "is not a budget"),
    ("9" * 400, "more than the largest budget"), ("$" + "9" * 400, "more than the largest"),
    ("1" * 5000 + "x", "is not a budget"),
])
def test_budgets_that_are_not(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_budget(text)


def test_caps_lower_each_limit_and_fill_in_the_missing_one() -> None:
    cap = Budget(dollars=5.0, tokens=1_000_000)
    assert Budget(dollars=8.0).capped(cap) == Budget(dollars=5.0, tokens=1_000_000)
    assert Budget(tokens=10).capped(cap) == Budget(dollars=5.0, tokens=10)
    assert Budget().capped(Budget()) == Budget() and not Budget()
    assert Budget(dollars=8.0).exceeds(cap) and not Budget(dollars=2.0).exceeds(cap)
    assert not Budget(dollars=2.0).exceeds(Budget(tokens=5))  # a new kind is no lowering


def test_a_budget_is_reached_by_either_limit() -> None:
    budget = Budget(dollars=1.0, tokens=1000)
    assert budget.reached(Spend(tokens=999, dollars=0.99)) is None
    assert budget.reached(Spend(tokens=1000, dollars=0.0)) == "1,000 tokens"
    assert budget.reached(Spend(tokens=10, dollars=1.0)) == "$1.00"
    assert Budget.from_json(budget.to_json()) == budget
    assert Budget.from_json("junk") == Budget() and Budget().to_json() is None
    assert budget.describe() == "$1.00 or 1,000 tokens"
    assert format_dollars(0.0042) == "$0.0042" and format_dollars(1234.5) == "$1,234.50"


def test_the_default_table_prices_dated_names_by_the_longest_pattern() -> None:
    table = default_prices()
    assert table.price("claude-sonnet-4-5-20250929") == Price(3.0, 15.0, 0.30, 3.75)
    assert table.price("claude-opus-4-5-20251101") == Price(5.0, 25.0, 0.50, 6.25)
    assert table.price("claude-opus-4-1-20250805") == Price(15.0, 75.0, 1.50, 18.75)
    mini = table.price("gpt-5-mini-2025-08-07")
    full = table.price("gpt-5")
    assert mini is not None and full is not None and mini.input < full.input
    assert table.price("GPT-5-Codex") == full  # names are matched without case
    assert table.price("llama-70b") is None and table.price(None) is None
    # 1M input and 100k output of Sonnet: $3 + $1.50; cached input at a tenth.
    assert table.cost("claude-sonnet-4-5", 1_000_000, 100_000, 1_000_000, 0) == \
        pytest.approx(4.80)


def test_an_operators_file_replaces_and_adds(tmp_path: Path) -> None:
    path = tmp_path / "prices.yml"
    path.write_text("models:\n"
                    "  claude-sonnet-4*: {input: 2, output: 10}\n"
                    "  my-local-model: {input: 0, output: 0}\n")
    table = PriceTable.load(path)
    assert table.price("claude-sonnet-4-5") == Price(2.0, 10.0, 2.0, 2.0)  # cache: as input
    assert table.price("my-local-model") == Price(0.0, 0.0, 0.0, 0.0)
    assert table.price("gpt-5") == default_prices().price("gpt-5")  # the rest stays


@pytest.mark.parametrize(("text", "line", "message"), [
    ("models:\n  a: {input: 1, output: 2, extra: 3}\n", 2, "a: unknown field 'extra'"),
    ("models:\n  a: {input: 1}\n", 2, "a: output is missing"),
    ("models:\n  a:\n    input: -1\n    output: 2\n", 3, "a: input must be a number"),
    ("models:\n  a: {input: lots, output: 2}\n", 2, "a: input must be a number"),
    ("models:\n  a: 3\n", 2, "a: expected a mapping"),
    ("models:\n  a: {input: 1, output: 1}\n  A: {input: 1, output: 1}\n", 3, "A is given twice"),
    ("models: [a]\n", 1, "`models` must map model names to prices"),
    ("prices: {}\n", 1, "expected a mapping with `models:`"),
    ("models:\n  a: {input: 1\n", 3, "not valid YAML"),
])
def test_a_bad_price_table_names_its_line(tmp_path: Path, text: str, line: int,
                                          message: str) -> None:
    path = tmp_path / "prices.yml"
    path.write_text(text)
    with pytest.raises(PriceTableError) as caught:
        PriceTable.load(path)
    assert str(caught.value).startswith(f"{path}, line {line}: ")
    assert message in str(caught.value)


def test_settings_name_a_bad_budget_or_price_table(
        tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    _, problems = load_settings(AGENTBOT_MAX_RUN_BUDGET="plenty")
    assert any(p.startswith("AGENTBOT_MAX_RUN_BUDGET:") and "`plenty` is not a budget" in p
               for p in problems)
    path = tmp_path / "prices.yml"
    path.write_text("models:\n  x: {input: 1}\n")
    _, problems = load_settings(AGENTBOT_PRICE_TABLE=str(path))
    assert f"AGENTBOT_PRICE_TABLE: {path}, line 2: x: output is missing" in problems
    _, problems = load_settings(AGENTBOT_PRICE_TABLE=str(tmp_path / "missing.yml"))
    assert any("missing.yml: cannot read it" in p for p in problems)
    settings = make_settings(max_run_budget="$5", user_daily_budget="1M",
                             installation_daily_budget="$100, 50M tokens")
    assert settings.run_budget_cap == Budget(dollars=5.0)
    assert settings.user_budget == Budget(tokens=1_000_000)
    assert settings.installation_budget == Budget(dollars=100.0, tokens=50_000_000)
