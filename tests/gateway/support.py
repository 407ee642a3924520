"""Stand-ins for the gateway's run lookup and audit trail, shared by the gateway's tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.gateway.grants import Grant


class StaticGrants:
    """Grants from a fixed table of credentials."""

    def __init__(self, table: Mapping[str, Grant]) -> None:
        self.table = dict(table)

    async def grant(self, credential: str) -> Grant | None:
        return self.table.get(credential)


class MemoryAudit:
    """Audit events kept in a list."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str, dict[str, Any]]] = []

    async def record(self, run_id: int, kind: str, data: dict[str, Any]) -> None:
        self.events.append((run_id, kind, dict(data)))
