"""Budgets at the trigger: a run's budget from its command or config, capped by the operator,
and the daily limits that refuse a trigger with a reply naming the limit and its reset."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import insert

from bot.app import BOT_KEY, create_app
from bot.config.settings import Settings
from bot.intake.inbox import InboxOptions
from bot.store.tables import run_usage, runs
from tests.commands.test_triggers import REPO, Harness
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub

NOW = dt.datetime(2026, 12, 6, 16, 30, tzinfo=dt.UTC)


@pytest.fixture
def limits() -> dict[str, Any]:
    return {}


@pytest.fixture
async def harness(aiohttp_client: Any, fake_github: FakeGitHub, database_url: str,
                  make_settings: Callable[..., Settings],
                  limits: dict[str, Any]) -> AsyncIterator[Harness]:
    fake_github.add_installation(p.INSTALLATION_ID, p.OWNER)
    fake_github.add_repo(p.OWNER, p.REPO, repo_id=p.REPO_ID)
    for number in (p.ISSUE_NUMBER, p.ISSUE_NUMBER + 1, p.ISSUE_NUMBER + 2):
        fake_github.add_issue(REPO, number)
    fake_github.add_collaborator(REPO, "octocat", "maintain")
    fake_github.add_collaborator(REPO, "hubot", "write")
    settings = make_settings(database_url=database_url, github_api_url=fake_github.url,
                             github_app_id=fake_github.app_id,
                             github_private_key=fake_github.private_key_pem, **limits)
    app = create_app(settings, inbox_options=InboxOptions(poll_seconds=3600))
    client = await aiohttp_client(app)
    bot = app[BOT_KEY]
    assert bot.inbox is not None
    await bot.inbox.close()
    # The limits' day is the context's clock's: a fixed afternoon.
    object.__setattr__(bot.context, "clock", lambda: NOW)
    fake_github.requests.clear()
    yield Harness(client, fake_github)


async def book(harness: Harness, run_id: int, *, tokens: int, cost: float | None,
               at: dt.datetime = NOW) -> None:
    engine = harness.bot.engine
    assert engine is not None
    async with engine.begin() as conn:
        await conn.execute(insert(run_usage).values(
            run_id=run_id, at=at, provider="anthropic", model="claude-sonnet-4-5",
            input_tokens=tokens, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0,
            cost=cost))


async def end_runs(harness: Harness) -> None:
    """Mark every run finished, so the next trigger on the same issue is not `already active`."""
    engine = harness.bot.engine
    assert engine is not None
    async with engine.begin() as conn:
        await conn.execute(runs.update().values(state="succeeded"))


async def test_a_command_budget_is_the_runs_and_the_operator_caps_it(
        harness: Harness, limits: dict[str, Any]) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent run --budget $3 fix it"))
    [run] = await harness.runs()
    assert run.config["budget"] == {"dollars": 3.0, "tokens": None}
    assert run.config["budget_from"] == "command"


@pytest.mark.parametrize("limits", [{"max_run_budget": "$2, 1M tokens"}])
async def test_the_operator_cap_lowers_a_budget_and_is_the_default(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent --budget=$3 fix it"))
    await end_runs(harness)
    harness.fake.push(REPO, {".github/agentbot.yml": b"budget: 500k tokens\n"})
    await harness.deliver("issue_comment", harness.comment("/agent fix it again"))
    await end_runs(harness)
    harness.fake.push(REPO, {".github/agentbot.yml": b"agent: claude\n"})
    await harness.deliver("issue_comment", harness.comment("/agent and again"))
    budgets = [(run.config["budget"], run.config["budget_from"])
               for run in await harness.runs()]
    assert budgets == [
        ({"dollars": 2.0, "tokens": 1_000_000}, "command"),  # $3 capped to $2; tokens added
        ({"dollars": 2.0, "tokens": 500_000}, "config"),
        ({"dollars": 2.0, "tokens": 1_000_000}, "config"),  # none asked: the operator's
    ]


async def test_a_bad_budget_gets_a_reply_and_no_run(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent --budget lots fix it"))
    assert await harness.runs() == []
    [reply] = harness.comments(p.ISSUE_NUMBER)
    assert "`--budget`: `lots` is not a budget" in reply


async def test_a_budget_in_the_config_with_a_mistake_names_its_line(harness: Harness) -> None:
    harness.fake.push(REPO, {".github/agentbot.yml": b"agent: claude\nbudget: $-3\n"})
    await harness.deliver("issue_comment", harness.comment("/agent fix it"))
    assert await harness.runs() == []
    [reply] = harness.comments(p.ISSUE_NUMBER)
    assert "`.github/agentbot.yml`, line 2, key `budget`: `$-3` is not a budget" in reply


async def test_network_allow_reaches_the_run(harness: Harness) -> None:
    harness.fake.push(REPO, {".github/agentbot.yml":
                             b"network:\n  allow: [registry.example.com]\n"})
    await harness.deliver("issue_comment", harness.comment("/agent fix it"))
    [run] = await harness.runs()
    assert run.config["network"] == {"allow": ["registry.example.com"]}


@pytest.mark.parametrize("limits", [{"user_daily_runs": 2}])
async def test_a_person_past_their_daily_runs_is_told_when_it_resets(harness: Harness) -> None:
    for number in (p.ISSUE_NUMBER, p.ISSUE_NUMBER + 1):
        await harness.deliver("issue_comment", harness.comment("/agent go", number=number))
    await harness.deliver("issue_comment",
                          harness.comment("/agent go", number=p.ISSUE_NUMBER + 2))
    assert len(await harness.runs()) == 2
    [reply] = harness.comments(p.ISSUE_NUMBER + 2)
    assert reply.startswith("@octocat agentbot did not start a run: you have started 2 runs "
                            "today")
    assert "`AGENTBOT_USER_DAILY_RUNS`" in reply
    assert "resets at 2026-12-07 00:00 UTC (in 7h30m)" in reply
    # Someone else still may.
    await harness.deliver("issue_comment",
                          harness.comment("/agent go", number=p.ISSUE_NUMBER + 2, login="hubot"))
    assert len(await harness.runs()) == 3
    metrics = harness.bot.metrics.render().decode()
    assert 'agentbot_triggers_refused_total{limit="user_daily_runs"} 1.0' in metrics


@pytest.mark.parametrize("limits", [{"user_daily_budget": "$5"}])
async def test_a_persons_daily_budget_counts_only_today_and_only_theirs(
        harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent go"))
    [first] = await harness.runs()
    await end_runs(harness)
    await book(harness, first.id, tokens=1000, cost=4.0)
    await book(harness, first.id, tokens=1000, cost=3.0, at=NOW - dt.timedelta(days=1))
    await harness.deliver("issue_comment", harness.comment("/agent again"))
    assert len(await harness.runs()) == 2  # $4 today: under $5
    await end_runs(harness)
    await book(harness, first.id, tokens=1000, cost=1.5)
    await harness.deliver("issue_comment", harness.comment("/agent once more"))
    assert len(await harness.runs()) == 2
    reply = harness.comments(p.ISSUE_NUMBER)[-1]
    assert ("the runs you started today have used 2,000 tokens, $5.50, which reaches the "
            "daily limit of $5.00 per person") in reply
    await harness.deliver("issue_comment", harness.comment("/agent mine", login="hubot"))
    assert len(await harness.runs()) == 3


@pytest.mark.parametrize("limits", [{"installation_daily_budget": "10k tokens"}])
async def test_an_installations_daily_budget_refuses_everyone(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent go"))
    [first] = await harness.runs()
    await end_runs(harness)
    await book(harness, first.id, tokens=10_000, cost=None)  # a model without a price
    await harness.deliver("issue_comment", harness.comment("/agent go", login="hubot",
                                                           number=p.ISSUE_NUMBER + 1))
    assert len(await harness.runs()) == 1
    [reply] = harness.comments(p.ISSUE_NUMBER + 1)
    assert reply.startswith("@hubot agentbot did not start a run: the runs of this "
                            "installation today have used 10,000 tokens, $0.00 (and 10,000 "
                            "tokens of models without a price)")
    assert "daily limit of 10,000 tokens" in reply


@pytest.mark.parametrize("limits", [{"user_daily_runs": 1}])
async def test_a_retry_counts_as_a_run_of_the_day(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent --budget 200k go"))
    await end_runs(harness)
    await harness.deliver("issue_comment", harness.comment("/agent retry"))
    assert len(await harness.runs()) == 1
    assert "you have started 1 runs today" in harness.comments(p.ISSUE_NUMBER)[-1]


async def test_a_retry_keeps_the_budget_its_command_gave(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent --budget 200k go"))
    await end_runs(harness)
    await harness.deliver("issue_comment", harness.comment("/agent retry"))
    budgets = [run.config["budget"] for run in await harness.runs()]
    assert budgets == [{"dollars": None, "tokens": 200_000}] * 2


@pytest.mark.parametrize("limits", [{"user_daily_runs": 3}])
async def test_a_group_counts_its_variants_against_the_daily_runs(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent --variants 2 go"))
    assert len(await harness.runs()) == 2
    await end_runs(harness)
    # Two more would make four: the group is refused whole.
    await harness.deliver("issue_comment", harness.comment("/agent --variants 2 again"))
    assert len(await harness.runs()) == 2
    reply = harness.comments(p.ISSUE_NUMBER)[-1]
    assert reply.startswith("@octocat agentbot did not start the 2 variants: you have started "
                            "2 runs today, and with them you would pass the 3 one person")
    await harness.deliver("issue_comment", harness.comment("/agent one more"))
    assert len(await harness.runs()) == 3
