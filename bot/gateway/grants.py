"""What the gateway knows of a run while it is active: its repository and where it may go."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.config.budget import Budget


@dataclass(frozen=True)
class Grant:
    """An active run, as the gateway serves it; gone once the run ends."""

    run_id: int
    installation_id: int
    repo_full_name: str  # "owner/name": the one repository git may fetch
    clone_url: str = ""  # where that repository is fetched from, as GitHub reported it
    # Host patterns the run may reach through the egress proxy: `pypi.org` (exactly that host),
    # `*.pythonhosted.org` (any host under it), either with `:port` (else 443 and 80).
    allowed_hosts: tuple[str, ...] = ()
    # The model the run was started with, when it names one (usage is booked under the model
    # each response reports).
    model: str | None = None
    # What the run's model requests may spend; the gateway refuses the next one past it.
    budget: Budget = Budget()
    extra: Mapping[str, Any] = field(default_factory=dict)


class Grants(Protocol):
    """Looks up the run a gateway credential belongs to."""

    async def grant(self, credential: str) -> Grant | None:
        """The grant of an active run's credential; None when unknown, forged or ended."""


class Audit(Protocol):
    """Where the gateway records what a run did through it (never a body, never a secret)."""

    async def record(self, run_id: int, kind: str, data: dict[str, Any]) -> None:
        """Keep one audit event: kind `egress`, `git` or `model`, with its fields."""

