"""The read-only installation token of each run: minted by the gateway, never seen by a sandbox."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.gateway.grants import Grant
from bot.loops import Ticker
from bot.store.tables import FINAL_STATES, runs

log = logging.getLogger(__name__)

# What git needs to fetch one repository; the bot makes every write with its own token.
READ_PERMISSIONS = {"contents": "read"}
# A token this close to its expiry is minted again rather than handed to a long fetch.
REFRESH_MARGIN_SECONDS = 600
SWEEP_SECONDS = 30.0


class TokenMinter(Protocol):
    """The part of the GitHub client the gateway needs (bot.github.client.GitHubApp has it)."""

    async def mint_scoped_token(self, installation_id: int, repositories: Iterable[str | int],
                                permissions: Mapping[str, str]) -> Any:
        """A new token limited to the repositories and permissions (`.value` is the secret)."""

    async def revoke_token(self, token: Any) -> bool:
        """Revoke a token minted before."""


class RunTokens:
    """One token per run, minted at its first fetch and revoked once the run has ended."""

    def __init__(self, github: TokenMinter, engine: AsyncEngine, *,
                 sweep_seconds: float = SWEEP_SECONDS) -> None:
        self._github = github
        self._engine = engine
        self._tokens: dict[int, Any] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._ticker = Ticker("gateway-token-sweep", self.sweep, sweep_seconds)

    def start(self) -> None:
        self._ticker.start()

    def notify(self) -> None:
        """A run changed: look for ended runs now rather than at the next sweep."""
        self._ticker.notify()

    async def close(self) -> None:
        await self._ticker.close()
        for run_id in list(self._tokens):
            await self._revoke(run_id)

    def held(self) -> set[int]:
        """The runs this gateway holds a token for."""
        return set(self._tokens)

    async def read_token(self, grant: Grant) -> str:
        lock = self._locks.setdefault(grant.run_id, asyncio.Lock())
        async with lock:  # two fetches of one run at once share one token
            token = self._tokens.get(grant.run_id)
            if token is None or token.expires_at - time.time() < REFRESH_MARGIN_SECONDS:
                token = await self._github.mint_scoped_token(
                    grant.installation_id, [grant.repo_full_name], READ_PERMISSIONS)
                self._tokens[grant.run_id] = token
            return str(token.value)

    async def sweep(self) -> None:
        """Revoke the tokens of runs that have ended (or are gone)."""
        held = list(self._tokens)
        if not held:
            return
        async with self._engine.connect() as conn:
            live = {row.id for row in (await conn.execute(
                select(runs.c.id).where(runs.c.id.in_(held),
                                        runs.c.state.not_in([s.value for s in FINAL_STATES]))
            )).all()}
        for run_id in held:
            if run_id not in live:
                await self._revoke(run_id)

    async def _revoke(self, run_id: int) -> None:
        token = self._tokens.pop(run_id, None)
        self._locks.pop(run_id, None)
        if token is None:
            return
        try:
            await self._github.revoke_token(token)
        except Exception as exc:  # it expires within the hour anyway
            log.warning("could not revoke a run's git token (%s)", type(exc).__name__,
                        extra={"run_id": run_id})
