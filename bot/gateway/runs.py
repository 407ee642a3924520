"""The gateway's view of the database: active runs as grants, its audit trail, model usage."""

from __future__ import annotations

import logging
from typing import Any

from cachetools import TTLCache
from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config.budget import Budget, PriceTable, Spend, default_prices
from bot.gateway import credentials
from bot.gateway.grants import Grant
from bot.gateway.usage import Usage
from bot.store import usage as usage_store
from bot.store.tables import RunState, gateway_audit, run_usage, runs, usage_totals, utcnow

log = logging.getLogger(__name__)

# A run is served from the moment it is launched until it ends; a cancel stops it at once.
SERVED_STATES = (RunState.STARTING.value, RunState.RUNNING.value)
# How long a looked-up grant is trusted: a run that ended is refused within this time.
GRANT_TTL_SECONDS = 2.0

# What the agent reads when its request is refused (in its provider's error shape).
REACHED = ("agentbot stopped this run: it reached its model budget of {limit} (used: {spent}). "
           "The work so far is kept; do not retry.")
UNPRICED = ("agentbot refused this request: the run's budget ({budget}) is in dollars, and the "
            "operator's price table has no price for the model {model}.")


class RunGrants:
    """Grants for credentials of runs that are active in the database."""

    def __init__(self, engine: AsyncEngine, key: bytes, *,
                 allowed_hosts: tuple[str, ...] = (),
                 repo_may_add: tuple[str, ...] = (),
                 ttl_seconds: float = GRANT_TTL_SECONDS) -> None:
        self._engine = engine
        self._key = key
        self._allowed = allowed_hosts
        self._repo_may_add = frozenset(h.lower() for h in repo_may_add)
        self._cache: TTLCache[int, Grant] = TTLCache(maxsize=10_000, ttl=ttl_seconds)

    async def grant(self, credential: str) -> Grant | None:
        run_id = credentials.run_of(self._key, credential)
        if run_id is None:
            return None
        cached = self._cache.get(run_id)
        if cached is not None:
            return cached
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(
                runs.c.id, runs.c.state, runs.c.cancel_requested, runs.c.installation_id,
                runs.c.repo_full_name, runs.c.clone_url, runs.c.model, runs.c.config,
            ).where(runs.c.id == run_id))).first()
        if row is None or row.state not in SERVED_STATES or row.cancel_requested:
            return None
        grant = Grant(run_id=row.id, installation_id=int(row.installation_id),
                      repo_full_name=row.repo_full_name, clone_url=row.clone_url,
                      allowed_hosts=self._allowed + self._repo_hosts(row.config),
                      model=row.model, budget=Budget.from_json((row.config or {}).get("budget")))
        self._cache[run_id] = grant
        return grant

    def forget(self) -> None:
        """Stop trusting cached grants: a run changed in this process (a cancel, an end)."""
        self._cache.clear()

    def _repo_hosts(self, config: dict[str, Any] | None) -> tuple[str, ...]:
        """The hosts the repository's `network.allow` adds, as far as the operator lets it."""
        wanted = ((config or {}).get("network") or {}).get("allow") or ()
        return tuple(h for h in wanted if isinstance(h, str) and h.lower() in self._repo_may_add)


class DatabaseAudit:
    """Audit events as rows of `gateway_audit`; a failed write is logged, never raised."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, run_id: int, kind: str, data: dict[str, Any]) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(gateway_audit).values(
                    run_id=run_id, at=utcnow(), kind=kind, data=data))
        except Exception as exc:
            log.warning("could not record a gateway audit event (%s)", type(exc).__name__,
                        extra={"run_id": run_id})


class UsageLedger:
    """Books each response's model usage, and its dollars by the price table, against its run
    (`run_usage`) and its installation's totals (`usage_totals`, for the metrics)."""

    def __init__(self, engine: AsyncEngine, prices: PriceTable | None = None) -> None:
        self._engine = engine
        self._prices = prices or default_prices()

    async def __call__(self, grant: Grant, provider: str, usage: Usage) -> None:
        model = (usage.model or grant.model or "")[:100]
        counts = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                  "cache_read_tokens": usage.cache_read_tokens,
                  "cache_write_tokens": usage.cache_write_tokens}
        cost = self._prices.cost(model, **counts)
        async with self._engine.begin() as conn:
            await conn.execute(insert(run_usage).values(
                run_id=grant.run_id, at=utcnow(), provider=provider, model=model or None,
                cost=cost, **counts))
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            added = {**counts, "cost": cost or 0.0}
            upsert = dialect.insert(usage_totals).values(
                installation_id=grant.installation_id, model=model, **added)
            await conn.execute(upsert.on_conflict_do_update(
                index_elements=["installation_id", "model"],
                set_={name: getattr(usage_totals.c, name) + getattr(upsert.excluded, name)
                      for name in added}))


class RunBudgets:
    """Keeps each run within its budget: the spend booked so far decides the next request."""

    def __init__(self, engine: AsyncEngine, prices: PriceTable | None = None) -> None:
        self._engine = engine
        self._prices = prices or default_prices()

    async def refusal(self, grant: Grant, model: str | None) -> str | None:
        """Why the run's next model request may not go out, or None when it may."""
        budget = grant.budget
        if not budget:
            return None
        if budget.dollars is not None and model and self._prices.price(model) is None:
            # Unpriced tokens cost nothing by the table: a dollar limit would not hold.
            return UNPRICED.format(model=model[:100], budget=budget.describe())
        spent = await usage_store.total(self._engine, run_id=grant.run_id)
        reached = budget.reached(Spend(*spent))
        if reached is None:
            return None
        async with self._engine.begin() as conn:
            await conn.execute(update(runs).where(
                runs.c.id == grant.run_id, runs.c.budget_reached_at.is_(None))
                .values(budget_reached_at=utcnow(), budget_reached=reached[:100]))
        log.info("model request refused: the run's budget is spent",
                 extra={"run_id": grant.run_id, "limit": reached})
        return REACHED.format(limit=reached, spent=Spend(*spent).describe())
