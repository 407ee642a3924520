"""What every handler gets: settings, database, GitHub clients and the permission cache."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.commands.permissions import Permissions
from bot.config.settings import Settings
from bot.store.tables import utcnow


class GitHubClients(Protocol):
    """Hands out gidgethub clients (`getitem`, `getiter`, `post`, `patch`, `put`, `delete`)."""

    def installation(self, installation_id: int) -> Any:
        """A client acting as the installation, with its token refreshed as needed."""


@dataclass(frozen=True)
class Context:
    """Passed to every handler as the `ctx` keyword of the router's dispatch."""

    settings: Settings
    db: AsyncEngine
    github: GitHubClients
    permissions: Permissions = field(default_factory=Permissions)
    clock: Callable[[], dt.datetime] = utcnow
    # Called after a run was queued or changed, so the scheduler looks at once.
    on_run_change: Callable[[], None] = lambda: None
    # The App's own bot login ("<slug>[bot]"), ignored as a sender.
    app_login: str | None = None
    # bot.config.loader.RepoConfigs: each repository's .github/agentbot.yml, ETag-cached.
    configs: Any = None
    # Told the name of the daily limit that refused a trigger (a metric counts them).
    on_limit: Callable[[str], None] = lambda _limit: None
