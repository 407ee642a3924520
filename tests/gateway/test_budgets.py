"""The gateway keeps each run within its budget: usage and dollars booked per response, the
next request past the limit refused in the provider's own error shape, the run marked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types.shared.error_response import ErrorResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config.budget import Budget
from bot.config.settings import Settings
from bot.gateway import credentials
from bot.gateway.app import gateway_app
from bot.gateway.credentials import gateway_key
from bot.metrics import Metrics
from bot.runs.ledger import transition
from bot.store.tables import RunState, gateway_audit, run_usage, runs, usage_totals
from tests.gateway.upstream import (
    ANTHROPIC_MODEL,
    JSON_TYPE,
    OPENAI_MODEL,
    Reply,
    Upstream,
    anthropic_message,
    responses_events,
    sse,
)
from tests.runs.test_callbacks import queue_run

ANTHROPIC_KEY = "sk-ant-api03-operator-budget-0123456789abcdef"
OPENAI_KEY = "sk-proj-operator-budget-0123456789abcdef"


class NoMinter:
    """The git proxy's token minter, never called by these tests."""

    async def mint_scoped_token(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no git here")

    async def revoke_token(self, token: Any) -> bool:
        return True


@dataclass
class World:
    engine: AsyncEngine
    upstream: Upstream
    url: str
    key: bytes

    async def run(self, budget: Budget, *, installation_id: int = 7, number: int = 1) -> str:
        """A started run with this budget; its gateway credential."""
        run_id = await queue_run(self.engine, number=number, installation_id=installation_id,
                                 config={"budget": budget.to_json()})
        await transition(self.engine, run_id, RunState.STARTING, "test")
        return credentials.issue(self.key, run_id)

    def anthropic(self, credential: str, **options: Any) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=f"{self.url}/anthropic", api_key=credential,
                                        **{"max_retries": 0, **options})

    def openai(self, credential: str, **options: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/openai/v1", api_key=credential,
                                  **{"max_retries": 0, **options})

    async def run_row(self, credential: str) -> Any:
        run_id = credentials.run_of(self.key, credential)
        async with self.engine.connect() as conn:
            return (await conn.execute(select(runs).where(runs.c.id == run_id))).one()


@pytest.fixture
async def world(aiohttp_client: Any, aiohttp_server: Any, engine: AsyncEngine,
                database_url: str, make_settings: Callable[..., Settings]
                ) -> AsyncIterator[World]:
    upstream = Upstream()
    server = await aiohttp_server(upstream.app)
    base = str(server.make_url("")).rstrip("/")
    settings = make_settings(database_url=database_url, anthropic_api_key=ANTHROPIC_KEY,
                             openai_api_key=OPENAI_KEY, anthropic_url=base, openai_url=base,
                             host="127.0.0.1", gateway_proxy_port=0)
    client = await aiohttp_client(gateway_app(settings, github=NoMinter(), engine=engine))
    yield World(engine, upstream, str(client.make_url("")).rstrip("/"),
                gateway_key(settings.private_key_pem() or ""))


def message_reply(input_tokens: int, output_tokens: int, model: str = ANTHROPIC_MODEL) -> Reply:
    body = {**anthropic_message("Done.", input_tokens, output_tokens), "model": model}
    return Reply(headers={"Content-Type": JSON_TYPE}, chunks=[json.dumps(body).encode()],
                 streamed=False)


async def ask(client: anthropic.AsyncAnthropic, model: str = "claude-sonnet-4-5") -> Any:
    return await client.messages.create(model=model, max_tokens=64,
                                        messages=[{"role": "user", "content": "go on"}])


async def test_a_token_budget_refuses_the_request_after_it_is_spent(world: World) -> None:
    credential = await world.run(Budget(tokens=100))
    world.upstream.answer(message_reply(60, 30), message_reply(60, 30))
    client = world.anthropic(credential, max_retries=2)
    await ask(client)
    await ask(client)  # 90 tokens spent: under 100, so it goes out (and overshoots)
    with pytest.raises(anthropic.PaymentRequiredError) as caught:
        await ask(client)
    await client.close()

    assert len(world.upstream.seen) == 2  # refused by the gateway, and not retried
    response = caught.value.response
    assert response.headers["x-should-retry"] == "false"
    error = ErrorResponse.model_validate(response.json())
    assert error.error.type == "billing_error"
    assert error.error.message.startswith(
        "agentbot stopped this run: it reached its model budget of 100 tokens (used: 180 "
        "tokens, $0.0013)")
    run = await world.run_row(credential)
    assert run.budget_reached_at is not None and run.budget_reached == "100 tokens"
    async with world.engine.connect() as conn:
        ends = (await conn.execute(select(gateway_audit.c.data).where(
            gateway_audit.c.run_id == run.id))).scalars().all()
    assert [(e["status"], e["end"]) for e in ends] == [(200, "complete"), (200, "complete"),
                                                       (402, "budget")]


async def test_a_dollar_budget_refuses_openai_as_an_exhausted_quota(world: World) -> None:
    # gpt-4.1: $2 input and $8 output a million tokens; 100k in and 10k out is $0.28.
    credential = await world.run(Budget(dollars=0.5))
    stream = Reply(headers={"Content-Type": "text/event-stream"},
                   chunks=sse(responses_events(["ok"], 100_000, 10_000)))
    world.upstream.answer(stream, stream)
    client = world.openai(credential, max_retries=2)
    for _ in range(2):
        async with client.responses.stream(model="gpt-4.1", input="go") as events:
            final = await events.get_final_response()
        assert final.model == OPENAI_MODEL
    with pytest.raises(openai.RateLimitError) as caught:
        await client.responses.create(model="gpt-4.1", input="go")
    await client.close()
    assert len(world.upstream.seen) == 2
    assert caught.value.code == "insufficient_quota"
    assert "reached its model budget of $0.50 (used: 220,000 tokens, $0.56)" in \
        caught.value.message
    run = await world.run_row(credential)
    assert run.budget_reached == "$0.50"


async def test_a_dollar_budget_refuses_a_model_without_a_price(world: World) -> None:
    credential = await world.run(Budget(dollars=1.0))
    client = world.anthropic(credential)
    with pytest.raises(anthropic.PaymentRequiredError) as caught:
        await ask(client, model="claude-next-unpriced")
    await client.close()
    assert world.upstream.seen == []
    assert "has no price for the model claude-next-unpriced" in caught.value.message
    # Not the budget running out: the run is not marked, so it fails rather than ends partial.
    assert (await world.run_row(credential)).budget_reached_at is None


async def test_without_a_budget_nothing_is_refused_and_usage_is_booked(world: World) -> None:
    credential = await world.run(Budget())
    world.upstream.answer(*(message_reply(1_000_000, 100_000) for _ in range(3)),
                          message_reply(10, 10, model="claude-next-unpriced"))
    client = world.anthropic(credential)
    for _ in range(3):
        await ask(client)
    await ask(client, model="claude-next-unpriced")
    await client.close()
    async with world.engine.connect() as conn:
        costs = (await conn.execute(select(run_usage.c.cost).order_by(run_usage.c.id))
                 ).scalars().all()
    # Sonnet: $3 + $1.50 for each; the unpriced model has no dollars.
    assert costs == [pytest.approx(4.5)] * 3 + [None]


async def test_usage_totals_per_installation_and_model_reach_the_metrics(world: World) -> None:
    first = await world.run(Budget(), installation_id=7, number=1)
    second = await world.run(Budget(), installation_id=8, number=2)
    world.upstream.answer(message_reply(100, 10), message_reply(200, 20),
                          message_reply(1000, 100))
    for credential in (first, first, second):
        client = world.anthropic(credential)
        await ask(client)
        await client.close()
    async with world.engine.connect() as conn:
        totals = {(row.installation_id, row.model): (row.input_tokens, row.output_tokens)
                  for row in (await conn.execute(select(usage_totals))).all()}
    assert totals == {(7, ANTHROPIC_MODEL): (300, 30), (8, ANTHROPIC_MODEL): (1000, 100)}
    metrics = Metrics()
    await metrics.read_usage(world.engine)
    text = metrics.render().decode()
    assert (f'agentbot_model_tokens_total{{installation="7",kind="input",'
            f'model="{ANTHROPIC_MODEL}"}} 300.0') in text
    assert (f'agentbot_model_cost_dollars_total{{installation="8",'
            f'model="{ANTHROPIC_MODEL}"}} 0.0045') in text
