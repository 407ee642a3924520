"""A delivery GitHub sent while agentbot was down: asked for again at start-up, run once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import unused_port

from bot.config.settings import Settings
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.flow.harness import REPO, Flow

ATTEMPT = "POST /app/hook/deliveries/{delivery_id}/attempts"


@pytest.fixture
async def flow_redelivering(fake_github: FakeGitHub, tmp_path: Path, database_url: str,
                            make_settings: Callable[..., Settings]) -> AsyncIterator[Flow]:
    """A started bot whose reconciler runs (the suite's settings turn it off)."""
    made = await Flow.create(fake_github, tmp_path, make_settings, database_url,
                             redeliver_interval="5m")
    await made.start()
    try:
        yield made
    finally:
        await made.close()


async def test_a_delivery_sent_while_the_bot_was_down_runs_once_it_is_back(
        flow_redelivering: Flow) -> None:
    flow, fake = flow_redelivering, flow_redelivering.fake
    await flow.stop()
    flow.public_port = unused_port()
    fake.webhook_url = f"http://127.0.0.1:{flow.public_port}/webhook"
    fake.webhook_secret = flow.settings.github_webhook_secret or ""
    data = p.issues_labeled()
    data["repository"]["clone_url"] = flow.git_url
    issue = fake.state.issues[(REPO, p.ISSUE_NUMBER)]
    data["issue"].update(title=issue.title, body=issue.body)
    lost = await fake.send_webhook("issues", data)
    assert lost.status_code == 0  # nobody listened

    await flow.start()  # the start-up pass asks GitHub to send it again
    run = await flow.wait_for_run()
    assert run.delivery_id == lost.guid
    assert (await flow.settled(run.id)).state == "succeeded"
    await fake.settle_webhooks()
    attempts = fake.hook_attempts(lost.guid)
    assert [(a.redelivery, a.status_code) for a in attempts] == [(False, 0), (True, 202)]

    # Later passes find it delivered: nothing is asked for again, no second run.
    assert flow.bot.redeliverer is not None
    assert await flow.bot.redeliverer.reconcile() == 0
    assert len(fake.calls(ATTEMPT)) == 1
    assert len(await flow.runs()) == 1 and len(flow.status_comments()) == 1
    metrics = flow.bot.metrics.render().decode()
    assert 'agentbot_redeliveries_total{outcome="requested"} 1.0' in metrics
