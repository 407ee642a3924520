"""Prometheus metrics: one registry per app, served at `GET /metrics` on the internal port."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.tables import RunState, runs, usage_totals

log = logging.getLogger(__name__)

SCRAPE_DB_TIMEOUT = 2.0
# Webhooks answer in milliseconds; GitHub gives up at 10 s.
INTAKE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RUN_BUCKETS = (30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200)
OTHER_EVENT = "other"


class ExecutorCollector(Collector):
    """The Kubernetes executor's own counters, read at scrape time (none for other executors)."""

    def __init__(self, executor: Callable[[], Any]) -> None:
        self._executor = executor

    def _families(self) -> tuple[CounterMetricFamily, CounterMetricFamily]:
        return (
            CounterMetricFamily("agentbot_kubernetes_api_errors",
                                "Failed Kubernetes API calls and broken watches"),
            CounterMetricFamily("agentbot_kubernetes_watch_restarts",
                                "Lists of Jobs or pods after the first (410 Gone, disconnects, "
                                "watch timeouts)"),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterator[Metric]:
        errors, restarts = self._families()
        executor = self._executor()
        if executor is not None and hasattr(executor, "api_errors"):
            errors.add_metric([], executor.api_errors)
            restarts.add_metric([], executor.watch_restarts)
        yield errors
        yield restarts


class UsageCollector(Collector):
    """Model usage per installation and model, from `usage_totals` as the scrape read it."""

    def __init__(self) -> None:
        self.rows: list[Any] = []

    def _families(self) -> tuple[CounterMetricFamily, CounterMetricFamily]:
        return (
            CounterMetricFamily("agentbot_model_tokens",
                                "Model tokens the gateway booked, by installation, model and "
                                "kind (input, output, cache_read, cache_write)",
                                labels=["installation", "model", "kind"]),
            CounterMetricFamily("agentbot_model_cost_dollars",
                                "Dollars of the booked tokens by the price table, by "
                                "installation and model (unpriced models count zero)",
                                labels=["installation", "model"]),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterator[Metric]:
        tokens, dollars = self._families()
        for row in self.rows:
            labels = [str(row.installation_id), row.model or "unknown"]
            for kind in ("input", "output", "cache_read", "cache_write"):
                tokens.add_metric([*labels, kind], getattr(row, f"{kind}_tokens"))
            dollars.add_metric(labels, row.cost)
        yield tokens
        yield dollars


class Metrics:
    """Every metric of one agentbot process, in its own registry (tests run several at once)."""

    def __init__(self, known_events: Iterable[str] = (),
                 executor: Callable[[], Any] = lambda: None) -> None:
        self.registry = CollectorRegistry()
        self._known_events = frozenset(known_events)
        self.deliveries = Counter(
            "agentbot_deliveries", "Webhook deliveries answered, by event and outcome",
            ["event", "outcome"], registry=self.registry)
        self.intake_seconds = Histogram(
            "agentbot_intake_duration_seconds", "Time from a webhook's arrival to its answer",
            buckets=INTAKE_BUCKETS, registry=self.registry)
        self.runs = Gauge("agentbot_runs", "Runs in the database, by state", ["state"],
                          registry=self.registry)
        self.database_up = Gauge("agentbot_database_up",
                                 "1 when the last scrape could count runs in the database",
                                 registry=self.registry)
        self.run_seconds = Histogram(
            "agentbot_run_duration_seconds",
            "From a run's start to its final state, by that state", ["state"],
            buckets=RUN_BUCKETS, registry=self.registry)
        self.github_requests = Counter(
            "agentbot_github_requests", "GitHub API responses, by method, path template and "
            "status", ["method", "path", "status"], registry=self.registry)
        self.github_remaining = Gauge(
            "agentbot_github_rate_limit_remaining",
            "x-ratelimit-remaining of the latest GitHub response that carried it",
            registry=self.registry)
        self.triggers_refused = Counter(
            "agentbot_triggers_refused", "Triggers refused by a daily limit, by limit",
            ["limit"], registry=self.registry)
        self.redeliveries = Counter(
            "agentbot_redeliveries", "Failed deliveries the reconciler asked GitHub to send "
            "again, by outcome (requested, refused by GitHub, gave_up after the last try)",
            ["outcome"], registry=self.registry)
        self.usage = UsageCollector()
        self.registry.register(ExecutorCollector(executor))
        self.registry.register(self.usage)

    def observe_delivery(self, event: str, outcome: str, seconds: float) -> None:
        """webhook.OBSERVE_KEY: one answered delivery."""
        # The event header is not covered by the signature: whoever holds one signed body may
        # name any event. Only the events agentbot handles become label values.
        if event not in self._known_events:
            event = OTHER_EVENT
        self.deliveries.labels(event, outcome).inc()
        self.intake_seconds.observe(seconds)

    def github_response(self, method: str, path: str, status: int,
                        remaining: int | None) -> None:
        """bot.github.client's on_response hook: one GitHub API response."""
        self.github_requests.labels(method, path, str(status)).inc()
        if remaining is not None:
            self.github_remaining.set(remaining)

    def run_finished(self, state: RunState, seconds: float) -> None:
        """A run reached a final state `seconds` after it started."""
        self.run_seconds.labels(state.value).observe(max(seconds, 0.0))

    async def count_runs(self, engine: AsyncEngine | None) -> None:
        """Fill the runs-by-state gauge from the database (every state, zeros included)."""
        counts: dict[str, int] = {}
        try:
            if engine is None:
                raise RuntimeError("not started")
            async with asyncio.timeout(SCRAPE_DB_TIMEOUT), engine.connect() as conn:
                rows = await conn.execute(
                    select(runs.c.state, func.count()).group_by(runs.c.state))
                counts = {state: count for state, count in rows}
        except Exception as exc:  # noqa: BLE001 - the other metrics are still worth serving
            log.warning("metrics: runs not counted (%s)", type(exc).__name__)
            self.database_up.set(0)
            return
        self.database_up.set(1)
        for state in RunState:
            self.runs.labels(state.value).set(counts.get(state.value, 0))

    async def read_usage(self, engine: AsyncEngine | None) -> None:
        """Read the usage totals for this scrape; on failure the last ones read stay."""
        if engine is None:
            return
        try:
            async with asyncio.timeout(SCRAPE_DB_TIMEOUT), engine.connect() as conn:
                self.usage.rows = list((await conn.execute(
                    select(usage_totals).order_by(usage_totals.c.installation_id,
                                                  usage_totals.c.model))).all())
        except Exception as exc:  # noqa: BLE001 - the other metrics are still worth serving
            log.warning("metrics: usage not read (%s)", type(exc).__name__)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def handler(metrics: Metrics, engine: Callable[[], AsyncEngine | None]
            ) -> Callable[[web.Request], Any]:
    """`GET /metrics`: count runs now, then the registry in Prometheus' text format."""
    async def serve_metrics(request: web.Request) -> web.Response:
        await metrics.count_runs(engine())
        await metrics.read_usage(engine())
        return web.Response(body=metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    return serve_metrics
