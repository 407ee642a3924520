"""GET /metrics on the internal port, over real HTTP: every metric moves when its event happens."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gidgethub
import pytest
from aiohttp.test_utils import TestClient
from kubernetes import client as kube_client
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.app import BOT_KEY, create_app, internal_app
from bot.cli.dryrun import RecordingGitHub
from bot.config.settings import Settings
from bot.executors.kubernetes import KubernetesExecutor
from bot.intake.inbox import InboxOptions
from bot.runs.ledger import Created, NewRun, create_run, transition
from bot.store import migrate
from bot.store.tables import RunState, create_engine
from tests.conftest import WEBHOOK_SECRET
from tests.fakes.github import FakeGitHub
from tests.fakes.kubeapi import KubeAPI


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus' text format, or None when it is absent."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


@dataclass
class Bot:
    public: TestClient
    internal: TestClient

    async def metrics(self) -> str:
        response = await self.internal.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()

    @property
    def engine(self) -> AsyncEngine:
        engine = self.public.app[BOT_KEY].engine
        assert engine is not None
        return engine


@pytest.fixture
async def start_bot(aiohttp_client: Any, make_settings: Callable[..., Settings],
                    database_url: str) -> Callable[..., Any]:
    async def start(**options: Any) -> Bot:
        settings = make_settings(database_url=database_url, **options.pop("settings", {}))
        options.setdefault("inbox_options", InboxOptions(poll_seconds=3600))
        public_app = create_app(settings, **options)
        public = await aiohttp_client(public_app)
        internal = await aiohttp_client(internal_app(public_app))
        return Bot(public, internal)
    return start


def signed(body: bytes, event: str, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": f"sha256={digest}"}


async def test_deliveries_by_event_and_outcome_and_the_intake_latency(
        start_bot: Callable[..., Any]) -> None:
    bot = await start_bot(github=RecordingGitHub(payload={}))
    await bot.public.app[BOT_KEY].inbox.close()  # only intake is measured here
    body = json.dumps({"action": "opened", "installation": {"id": 7}}).encode()
    assert (await bot.public.post("/webhook", data=body, headers=signed(body, "issues"))
            ).status == 202
    assert (await bot.public.post("/webhook", data=body, headers=signed(body, "ping"))
            ).status == 202
    forged = signed(body, "made_up_event_name", secret="not the secret")
    assert (await bot.public.post("/webhook", data=body, headers=forged)).status == 401
    forged = signed(body, "issues", secret="not the secret")
    assert (await bot.public.post("/webhook", data=body, headers=forged)).status == 401

    text = await bot.metrics()
    assert sample(text, "agentbot_deliveries_total", event="issues", outcome="accepted") == 1
    assert sample(text, "agentbot_deliveries_total", event="ping", outcome="accepted") == 1
    assert sample(text, "agentbot_deliveries_total", event="issues",
                  outcome="unauthorized") == 1
    # An unsigned request cannot make up label values.
    assert sample(text, "agentbot_deliveries_total", event="other", outcome="unauthorized") == 1
    assert "made_up_event_name" not in text
    assert sample(text, "agentbot_intake_duration_seconds_count") == 4
    assert sample(text, "agentbot_intake_duration_seconds_bucket", le="10.0") == 4
    total = sample(text, "agentbot_intake_duration_seconds_sum")
    assert total is not None and 0 < total < 10


async def new_run(engine: AsyncEngine, number: int) -> int:
    outcome = await create_run(engine, NewRun(
        installation_id=7, repo_id=100, repo_full_name="octo-org/demo",
        clone_url="https://github.com/octo-org/demo.git", number=number,
        is_pull_request=False, base_ref="main", trigger="label", sender_login="octocat",
        sender_id=1, delivery_id=str(uuid.uuid4()), agent="claude", timeout_seconds=600))
    assert isinstance(outcome, Created)
    return outcome.run_id


async def test_runs_by_state_from_the_database_and_the_run_duration(
        aiohttp_client: Any, make_settings: Callable[..., Settings], database_url: str,
        tmp_path: Path) -> None:
    settings = make_settings(database_url=database_url)
    public_app = create_app(settings, github=RecordingGitHub(payload={}),
                            inbox_options=InboxOptions(poll_seconds=3600))
    public = await aiohttp_client(public_app)
    bot_engine = public.app[BOT_KEY].engine
    # Finished before the scheduler starts with the internal app, so it leaves them alone.
    succeeded, failed, cancelled = [await new_run(bot_engine, n) for n in (1, 2, 3)]
    for run_id in (succeeded, failed):
        assert await transition(bot_engine, run_id, RunState.STARTING, "scheduled")
    assert await transition(bot_engine, succeeded, RunState.RUNNING, "pod running")
    assert await transition(bot_engine, succeeded, RunState.SUCCEEDED, "done")
    assert await transition(bot_engine, failed, RunState.FAILED, "image pull failed")
    assert await transition(bot_engine, cancelled, RunState.CANCELLED, "cancelled by @octocat")
    # Another bot's database: its runs are not this bot's metrics.
    elsewhere = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.db'}")
    await migrate.upgrade(elsewhere)
    other = await new_run(elsewhere, 1)
    assert await transition(elsewhere, other, RunState.STARTING, "scheduled")
    assert await transition(elsewhere, other, RunState.SUCCEEDED, "done")
    await elsewhere.dispose()
    internal = await aiohttp_client(internal_app(public_app))

    text = await (await internal.get("/metrics")).text()
    assert sample(text, "agentbot_database_up") == 1
    for state, count in (("succeeded", 1), ("failed", 1), ("cancelled", 1), ("queued", 0),
                         ("running", 0), ("timed_out", 0)):
        assert sample(text, "agentbot_runs", state=state) == count, state
    # Started runs are timed; the one cancelled while queued never ran.
    assert sample(text, "agentbot_run_duration_seconds_count", state="succeeded") == 1
    assert sample(text, "agentbot_run_duration_seconds_count", state="failed") == 1
    assert sample(text, "agentbot_run_duration_seconds_count", state="cancelled") is None
    elapsed = sample(text, "agentbot_run_duration_seconds_sum", state="succeeded")
    assert elapsed is not None and 0 <= elapsed < 60

    # A new run shows up at the next scrape (in whichever state the scheduler moved it to).
    await new_run(bot_engine, 4)
    text = await (await internal.get("/metrics")).text()
    assert sum(sample(text, "agentbot_runs", state=s.value) or 0 for s in RunState) == 4


async def test_metrics_still_answer_when_the_database_is_unreachable(
        start_bot: Callable[..., Any]) -> None:
    bot = await start_bot(github=RecordingGitHub(payload={}))
    text = await bot.metrics()
    assert sample(text, "agentbot_database_up") == 1
    working = bot.engine
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    unreachable = create_async_engine("postgresql+asyncpg://agentbot@127.0.0.1:1/gone")
    bot.public.app[BOT_KEY].engine = unreachable
    try:
        text = await bot.metrics()
    finally:
        bot.public.app[BOT_KEY].engine = working
        await unreachable.dispose()
    assert sample(text, "agentbot_database_up") == 0
    assert sample(text, "agentbot_runs", state="queued") == 0  # the last good count stays


async def test_github_requests_by_status_and_the_remaining_rate_limit(
        start_bot: Callable[..., Any], fake_github: FakeGitHub) -> None:
    bot = await start_bot(settings={
        "github_api_url": fake_github.url, "github_app_id": fake_github.app_id,
        "github_private_key": fake_github.private_key_pem})
    github = bot.public.app[BOT_KEY].github
    with pytest.raises(gidgethub.BadRequest):
        await github.app_client().getitem("/app/installations/999")
    await github.app_client().getitem("/app")
    await github.app_client().getitem("/app")

    text = await bot.metrics()
    # Two here, and the start-up's own (the bot reads its login from GET /app).
    assert len(fake_github.calls("GET /app")) == 3
    assert sample(text, "agentbot_github_requests_total", method="GET", path="/app",
                  status="200") == 3
    assert sample(text, "agentbot_github_requests_total", method="GET",
                  path="/app/installations/{n}", status="404") == 1
    assert sample(text, "agentbot_github_rate_limit_remaining") == \
        fake_github.rate_limit("app")["remaining"]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def kube_executor(kube_api: KubeAPI) -> AsyncIterator[KubernetesExecutor]:
    api = kube_client.ApiClient(kube_api.configuration())
    executor = KubernetesExecutor(namespace=kube_api.namespace, image="agentbot-sandbox:test",
                                  api_client=api, backoff_base=0.01, backoff_max=0.05)
    yield executor
    await executor.close()
    api.close()


async def test_kubernetes_api_errors_and_watch_restarts(
        start_bot: Callable[..., Any], kube_api: KubeAPI,
        kube_executor: KubernetesExecutor) -> None:
    kube_api.fail_next(2, status=500, method="GET", plural="jobs")
    bot = await start_bot(github=RecordingGitHub(payload={}), executor=kube_executor)
    await until(lambda: kube_executor.watching)
    text = await bot.metrics()
    assert sample(text, "agentbot_kubernetes_api_errors_total") == 2
    assert sample(text, "agentbot_kubernetes_watch_restarts_total") == 0

    kube_api.expire_watches()  # 410 Gone: both watches list again
    await until(lambda: kube_executor.watch_restarts >= 2)
    text = await bot.metrics()
    restarts = sample(text, "agentbot_kubernetes_watch_restarts_total")
    assert restarts is not None and restarts >= 2


async def test_no_kubernetes_series_with_the_local_executor(
        start_bot: Callable[..., Any]) -> None:
    bot = await start_bot(github=RecordingGitHub(payload={}))
    text = await bot.metrics()
    assert "# TYPE agentbot_kubernetes_api_errors_total counter" in text
    assert sample(text, "agentbot_kubernetes_api_errors_total") is None


def test_each_app_has_its_own_registry(make_settings: Callable[..., Settings]) -> None:
    first = create_app(make_settings())[BOT_KEY].metrics
    second = create_app(make_settings())[BOT_KEY].metrics
    first.observe_delivery("issues", "accepted", 0.01)
    assert b'agentbot_deliveries_total{event="issues",outcome="accepted"} 1.0' in first.render()
    assert b"agentbot_deliveries_total{" not in second.render()

