"""Measurement switches patched into a real `agentbot serve`, to price one part of intake.

Not part of agentbot: each experiment replaces one piece of bot/ at start, so that what that
piece costs can be measured with the same harness on the same machine.
`python -m bench.experiments EXPERIMENT[,EXPERIMENT...]` starts `agentbot serve` with them;
`python -m bench.intake --experiment ...` does that for its agentbot rows.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any

from bot.intake import inbox, webhook, writer
from bot.store import tables


def no_inbox() -> None:
    """Measurement only: the dispatch worker never claims anything (isolates the intake)."""
    async def drain_once(self: Any) -> int:
        self.alive_at = tables.utcnow()
        return 0

    inbox.Inbox.drain_once = drain_once  # type: ignore[method-assign]


def no_parse() -> None:
    """Measurement only, breaks the contract (400 for a body that is not a JSON object):
    the body is not parsed before the answer; shows what the parse costs."""
    def _delivery(delivery_id: str, event: str, body: bytes) -> writer.DeliveryRow:
        return writer.DeliveryRow(delivery_id, event, "labeled", 49871203, body)

    webhook._delivery = _delivery


def no_gc() -> None:
    """Measurement only: the cyclic garbage collector never runs; shows what its passes cost."""
    gc.disable()


EXPERIMENTS: dict[str, Callable[[], None]] = {
    "no-inbox": no_inbox, "no-parse": no_parse, "no-gc": no_gc,
}


def apply(names: list[str]) -> None:
    """Patch the named experiments in, in order."""
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise SystemExit(f"unknown experiments: {', '.join(unknown)}; "
                         f"known: {', '.join(EXPERIMENTS)}")
    for name in names:
        EXPERIMENTS[name]()


def main(argv: list[str]) -> int:
    """`agentbot serve` with experiments: argv[0] is a comma-separated list of them."""
    apply([n for n in argv[0].split(",") if n] if argv else [])
    from bot.__main__ import main as agentbot

    return agentbot(["serve"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
