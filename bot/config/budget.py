"""Budgets in tokens and dollars, and the price table that turns tokens into dollars."""

from __future__ import annotations

import fnmatch
import functools
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bot.markdown import code_span

# The most a budget may name: far above any real run, low enough that sums stay exact.
MAX_DOLLARS = 1_000_000.0
MAX_TOKENS = 10**12
PRICE_LIMIT = 10_000.0  # dollars per million tokens; more is a typo
DEFAULT_PRICES = "prices.yml"

_DOLLARS = re.compile(r"\$\s*(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*(?:usd|dollars?)", re.I)
_TOKENS = re.compile(r"(\d+(?:\.\d+)?)\s*([km])?\s*(?:tokens?)?", re.I)
_SCALE = {None: 1, "k": 1_000, "m": 1_000_000}

BAD_BUDGET = ("{value} is not a budget; write dollars like `$3` or `$0.50`, tokens like "
              "`500k` or `2M tokens`, or both: `$3, 2M tokens`")
ZERO_BUDGET = "a budget must be more than zero"
HUGE_BUDGET = "{value} is more than the largest budget agentbot takes"
TWICE = "the budget names {what} twice"


@dataclass(frozen=True)
class Budget:
    """Limits in dollars and in tokens; None is no limit of that kind."""

    dollars: float | None = None
    tokens: int | None = None

    def __bool__(self) -> bool:
        return self.dollars is not None or self.tokens is not None

    def capped(self, cap: Budget) -> Budget:
        """Each limit no higher than the cap's; where only the cap has one, the cap's."""
        return Budget(dollars=_lower(self.dollars, cap.dollars),
                      tokens=_lower(self.tokens, cap.tokens))

    def exceeds(self, cap: Budget) -> bool:
        """Whether the cap lowers any limit of this budget."""
        return any(mine is not None and limit is not None and mine > limit
                   for mine, limit in ((self.dollars, cap.dollars), (self.tokens, cap.tokens)))

    def reached(self, spend: Spend) -> str | None:
        """Which limit the spend has reached (its description), or None while within."""
        if self.tokens is not None and spend.tokens >= self.tokens:
            return format_tokens(self.tokens)
        if self.dollars is not None and spend.dollars >= self.dollars:
            return format_dollars(self.dollars)
        return None

    def describe(self) -> str:
        parts = []
        if self.dollars is not None:
            parts.append(format_dollars(self.dollars))
        if self.tokens is not None:
            parts.append(format_tokens(self.tokens))
        return " or ".join(parts) or "no limit"

    def to_json(self) -> dict[str, Any] | None:
        return {"dollars": self.dollars, "tokens": self.tokens} if self else None

    @classmethod
    def from_json(cls, data: Any) -> Budget:
        """A budget stored by `to_json`; anything else is no budget."""
        if not isinstance(data, dict):
            return cls()
        dollars, tokens = data.get("dollars"), data.get("tokens")
        return cls(dollars=float(dollars) if isinstance(dollars, int | float) else None,
                   tokens=int(tokens) if isinstance(tokens, int) else None)


@dataclass(frozen=True)
class Spend:
    """What was used: every billed token, the dollars of those the price table knows, and the
    tokens of models it does not know (their dollars are missing from `dollars`)."""

    tokens: int = 0
    dollars: float = 0.0
    unpriced_tokens: int = 0

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.tokens + other.tokens, self.dollars + other.dollars,
                     self.unpriced_tokens + other.unpriced_tokens)

    def describe(self) -> str:
        text = f"{format_tokens(self.tokens)}, {format_dollars(self.dollars)}"
        if self.unpriced_tokens:
            text += f" (and {format_tokens(self.unpriced_tokens)} of models without a price)"
        return text


def _lower(value: Any, cap: Any) -> Any:
    if value is None:
        return cap
    return value if cap is None else min(value, cap)


def format_dollars(amount: float) -> str:
    """`$3.00`, `$0.0042`: cents, or four places below a cent."""
    if 0 < amount < 0.01:
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


def format_tokens(count: int) -> str:
    return f"{count:,} tokens"


def parse_budget(text: str) -> Budget:
    """A budget from `$3`, `2M tokens`, `500k`, `$3, 2M tokens`; ValueError says what is wrong.

    A bare number is tokens; dollars carry a `$` (or `usd`)."""
    dollars: float | None = None
    tokens: int | None = None
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not part for part in parts):
        raise ValueError(BAD_BUDGET.format(value=code_span(text, 40)))
    for part in parts:
        if match := _DOLLARS.fullmatch(part):
            if dollars is not None:
                raise ValueError(TWICE.format(what="dollars"))
            dollars = float(match.group(1) or match.group(2))
            if dollars > MAX_DOLLARS:
                raise ValueError(HUGE_BUDGET.format(value=code_span(part, 40)))
        elif match := _TOKENS.fullmatch(part):
            if tokens is not None:
                raise ValueError(TWICE.format(what="tokens"))
            scale = _SCALE[(match.group(2) or "").lower() or None]
            amount = float(match.group(1)) * scale
            if amount > MAX_TOKENS:
                raise ValueError(HUGE_BUDGET.format(value=code_span(part, 40)))
            tokens = math.floor(amount)
        else:
            raise ValueError(BAD_BUDGET.format(value=code_span(part, 40)))
    if (dollars is not None and dollars <= 0) or (tokens is not None and tokens <= 0):
        raise ValueError(ZERO_BUDGET)
    return Budget(dollars=dollars, tokens=tokens)


# --- prices ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Price:
    """Dollars per million tokens of each kind."""

    input: float
    output: float
    cache_read: float
    cache_write: float

    def cost(self, input_tokens: int, output_tokens: int, cache_read_tokens: int,
             cache_write_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output
                + cache_read_tokens * self.cache_read
                + cache_write_tokens * self.cache_write) / 1_000_000


class PriceTableError(Exception):
    """A price table that cannot be used; `str()` names the file and the line."""

    def __init__(self, message: str, path: str, line: int | None = None) -> None:
        where = f"{path}, line {line}" if line is not None else path
        super().__init__(f"{where}: {message}")


_FIELDS = ("input", "output", "cache_read", "cache_write")


class PriceTable:
    """Model name -> Price: exact names first, then the longest matching pattern."""

    def __init__(self, entries: dict[str, Price]) -> None:
        self._exact = {name.lower(): price for name, price in entries.items()
                       if not _is_pattern(name)}
        # Longest first: `gpt-5-mini*` is a better match for gpt-5-mini than `gpt-5*`.
        self._patterns = sorted(((name.lower(), price) for name, price in entries.items()
                                 if _is_pattern(name)), key=lambda item: -len(item[0]))
        self.entries = dict(entries)

    def price(self, model: str | None) -> Price | None:
        if not model:
            return None
        name = model.lower()
        if name in self._exact:
            return self._exact[name]
        for pattern, price in self._patterns:
            if fnmatch.fnmatchcase(name, pattern):
                return price
        return None

    def cost(self, model: str | None, input_tokens: int, output_tokens: int,
             cache_read_tokens: int, cache_write_tokens: int) -> float | None:
        """The dollars of one response's tokens, or None when the model has no price."""
        price = self.price(model)
        if price is None:
            return None
        return price.cost(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)

    @classmethod
    def parse(cls, text: str, path: str) -> PriceTable:
        return cls(_parse_prices(text, path))

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        """The defaults, with the operator's file (if any) replacing and adding entries."""
        entries = dict(default_prices().entries)
        if path is not None:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise PriceTableError(f"cannot read it ({exc.strerror})", str(path)) from None
            except UnicodeDecodeError:
                raise PriceTableError("it is not UTF-8 text", str(path)) from None
            entries.update(_parse_prices(text, str(path)))
        return cls(entries)


@functools.cache
def default_prices() -> PriceTable:
    text = resources.files("bot.config").joinpath(DEFAULT_PRICES).read_text(encoding="utf-8")
    return PriceTable.parse(text, DEFAULT_PRICES)


def _is_pattern(name: str) -> bool:
    return any(char in name for char in "*?[")


def _parse_prices(text: str, path: str) -> dict[str, Price]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise PriceTableError(f"not valid YAML: {exc.problem}", path,
                              mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise PriceTableError(f"not valid YAML: {exc}", path) from None
    if root is None:
        return {}
    models = _mapping_item(root, "models", path)
    if models is None:
        raise PriceTableError("expected a mapping with `models:`", path, _line(root))
    entries: dict[str, Price] = {}
    for key, value in models.value:
        if not isinstance(key, yaml.ScalarNode) or not key.value.strip():
            raise PriceTableError("a model name must be text", path, _line(key))
        name = key.value.strip()
        if name.lower() in (n.lower() for n in entries):
            raise PriceTableError(f"{name} is given twice", path, _line(key))
        entries[name] = _price(name, value, path)
    return entries


def _price(name: str, node: yaml.Node, path: str) -> Price:
    if not isinstance(node, yaml.MappingNode):
        raise PriceTableError(f"{name}: expected a mapping like `{{input: 3, output: 15}}`",
                              path, _line(node))
    values: dict[str, float] = {}
    for key, value in node.value:
        field = key.value if isinstance(key, yaml.ScalarNode) else ""
        if field not in _FIELDS:
            raise PriceTableError(f"{name}: unknown field {field!r}; the fields are "
                                  + ", ".join(_FIELDS), path, _line(key))
        try:
            number = float(value.value) if isinstance(value, yaml.ScalarNode) else math.nan
        except ValueError:
            number = math.nan
        if not (0 <= number <= PRICE_LIMIT):
            raise PriceTableError(f"{name}: {field} must be a number of dollars per million "
                                  f"tokens, from 0 to {PRICE_LIMIT:,.0f}", path, _line(value))
        values[field] = number
    for required in ("input", "output"):
        if required not in values:
            raise PriceTableError(f"{name}: {required} is missing", path, _line(node))
    # Unlisted cache prices cost what input does: never less than the truth.
    return Price(input=values["input"], output=values["output"],
                 cache_read=values.get("cache_read", values["input"]),
                 cache_write=values.get("cache_write", values["input"]))


def _mapping_item(node: yaml.Node, name: str, path: str) -> yaml.MappingNode | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == name:
            if not isinstance(value, yaml.MappingNode):
                raise PriceTableError("`models` must map model names to prices", path,
                                      _line(value))
            return value
    return None


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1
