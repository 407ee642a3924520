"""The sandbox's HTTP client and event sender against a real loopback server."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from aiohttp import web

from sandbox.callbacks import CallbackClient, CallbackError, RetryPolicy
from sandbox.events import Event, EventSink, Redactor, log_line, message, todo
from tests.sandbox.support import CALLBACK_TOKEN

FAST = RetryPolicy(attempts=4, base_seconds=0.01, max_pause_seconds=0.05,
                   request_timeout_seconds=5)


class Bot:
    """Answers with the planned statuses, then 200; remembers every request."""

    def __init__(self, plan: list[int] | None = None, *, headers: dict[str, str] | None = None,
                 refuse_lists: bool = False) -> None:
        self.plan = list(plan or [])
        self.headers = headers or {}
        self.refuse_lists = refuse_lists
        self.bodies: list[Any] = []
        self.auth: list[str | None] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization"))
        body = await request.json()
        if self.refuse_lists and isinstance(body, list):
            return web.Response(status=400)
        self.bodies.append(body)
        if self.plan:
            return web.Response(status=self.plan.pop(0), headers=self.headers)
        return web.Response(status=200)


async def serve(aiohttp_server: Any, bot: Bot) -> str:
    server = await aiohttp_server(bot.app())
    return str(server.make_url("/internal/runs/5"))


async def test_retries_a_429_honouring_retry_after_within_bounds(aiohttp_server: Any) -> None:
    bot = Bot([429, 503], headers={"Retry-After": "30"})
    pauses: list[float] = []
    client = CallbackClient(await serve(aiohttp_server, bot), CALLBACK_TOKEN,
                            sleep=pauses.append)

    status = await asyncio.to_thread(client.put_result, {"status": "succeeded"}, FAST)

    assert status == 200
    assert len(bot.bodies) == 3
    assert pauses == [0.05, 0.05]  # the server asked for 30 s; the policy caps the pause
    assert bot.auth == [f"Bearer {CALLBACK_TOKEN}"] * 3


@pytest.mark.parametrize("status", [400, 401, 404, 413])
async def test_a_final_4xx_is_not_retried(aiohttp_server: Any, status: int) -> None:
    bot = Bot([status])
    client = CallbackClient(await serve(aiohttp_server, bot), CALLBACK_TOKEN, sleep=lambda _: None)

    with pytest.raises(CallbackError) as caught:
        await asyncio.to_thread(client.put_result, {"status": "failed"}, FAST)

    assert caught.value.status == status
    assert len(bot.bodies) == 1


async def test_gives_up_after_the_attempts_with_the_last_problem() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pauses: list[float] = []
    client = CallbackClient(f"http://127.0.0.1:{port}/internal/runs/5", CALLBACK_TOKEN,
                            sleep=pauses.append)

    with pytest.raises(CallbackError) as caught:
        await asyncio.to_thread(client.post_events, [], FAST)

    assert caught.value.status is None
    assert "after 4 attempts" in str(caught.value) and "Connection" in str(caught.value)
    assert len(pauses) == 3 and all(0 <= p <= 0.05 for p in pauses)
    assert CALLBACK_TOKEN not in str(caught.value)


async def test_a_redirect_is_not_followed_with_the_token(aiohttp_server: Any) -> None:
    elsewhere = Bot()
    target = await serve(aiohttp_server, elsewhere)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(target)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    server = await aiohttp_server(app)
    client = CallbackClient(str(server.make_url("/internal/runs/5")), CALLBACK_TOKEN)

    with pytest.raises(CallbackError) as caught:
        await asyncio.to_thread(client.put_result, {}, FAST)

    assert caught.value.status == 307
    assert elsewhere.auth == []


def test_backoff_grows_and_stays_bounded() -> None:
    policy = RetryPolicy(base_seconds=0.5, max_pause_seconds=8.0)
    for attempt in range(1, 10):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        assert all(0 <= policy.pause(attempt) <= ceiling for _ in range(50))
    assert policy.pause(3, retry_after=2.5) == 2.5
    assert policy.pause(3, retry_after=120) == 8.0


async def test_the_sink_batches_numbers_and_redacts(aiohttp_server: Any) -> None:
    bot = Bot()
    client = CallbackClient(await serve(aiohttp_server, bot), CALLBACK_TOKEN)
    secret = "ghs_secretvalue123"
    sink = EventSink(client, Redactor([secret]), interval=0.05)

    def produce() -> None:
        for number in range(120):
            sink.emit(log_line("agent", "stdout", f"line {number} with {secret} inside"))
        sink.emit(message("done"))
        sink.close(5.0)

    await asyncio.to_thread(produce)

    events = [event for body in bot.bodies for event in body]
    assert [e["seq"] for e in events] == list(range(1, 122))
    assert all(isinstance(body, list) and len(body) <= 50 for body in bot.bodies)
    assert events[0]["data"]["text"] == "line 0 with [redacted] inside"
    assert secret not in str(bot.bodies)
    assert (sink.sent, sink.dropped) == (121, 0)


async def test_the_sink_falls_back_to_single_events_when_lists_are_refused(
        aiohttp_server: Any) -> None:
    bot = Bot(refuse_lists=True)
    client = CallbackClient(await serve(aiohttp_server, bot), CALLBACK_TOKEN)
    sink = EventSink(client, Redactor([]), interval=0.05)

    def produce() -> None:
        for number in range(3):
            sink.emit(message(f"m{number}"))
        sink.flush(5.0)
        sink.emit(message("later"))
        sink.close(5.0)

    await asyncio.to_thread(produce)

    assert [body["data"]["text"] for body in bot.bodies] == ["m0", "m1", "m2", "later"]
    assert sink.sent == 4


async def test_the_sink_stops_sending_once_the_run_is_refused(aiohttp_server: Any) -> None:
    bot = Bot([401])
    client = CallbackClient(await serve(aiohttp_server, bot), CALLBACK_TOKEN)
    sink = EventSink(client, Redactor([]), interval=0.05)

    def produce() -> None:
        sink.emit(message("first"))
        sink.flush(5.0)
        for number in range(5):
            sink.emit(message(f"after {number}"))
        sink.close(5.0)

    await asyncio.to_thread(produce)

    assert len(bot.bodies) == 1
    assert (sink.sent, sink.dropped) == (0, 6)


async def test_batches_stay_under_the_bots_body_limit(aiohttp_server: Any) -> None:
    bot = Bot()
    client = CallbackClient(await serve(aiohttp_server, bot), CALLBACK_TOKEN)
    sink = EventSink(client, Redactor([]), interval=0.05)

    def produce() -> None:
        for number in range(7):
            sink.emit(Event("tool", {"name": f"t{number}", "output": "x" * 100_000}))
        sink.close(5.0)

    await asyncio.to_thread(produce)

    assert [len(body) for body in bot.bodies] == [2, 2, 2, 1]
    assert all(len(json.dumps(body)) < 256 * 1024 + 1024 for body in bot.bodies)


def test_a_long_plan_is_capped() -> None:
    event = todo([{"text": "y" * 900, "status": "pending"}] * 150)

    assert len(event.data["items"]) == 100 and event.data["more"] == 50
    assert event.data["items"][0]["text"].startswith("y" * 500 + "…")
