"""POST /webhook over real HTTP: every answer of the spec's HTTP section."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot.app import BOT_KEY, create_app
from bot.cli.dryrun import RecordingGitHub
from bot.config.settings import Settings
from bot.intake.inbox import InboxOptions
from bot.intake.webhook import MAX_BODY_BYTES
from bot.store.tables import create_engine, deliveries
from tests.conftest import WEBHOOK_SECRET

DOC_SECRET = "It's a Secret to Everybody"
DOC_PAYLOAD = b"Hello, World!"
DOC_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

PAYLOAD = {"action": "opened", "installation": {"id": 77}, "sender": {"login": "octocat"}}


def signed(body: bytes, secret: str = WEBHOOK_SECRET, *, event: str = "issues",
           delivery: str | None = None) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={digest}",
    }


@pytest.fixture
def intake_app(make_settings: Callable[..., Settings], database_url: str
               ) -> Callable[..., web.Application]:
    def make(**overrides: Any) -> web.Application:
        settings = make_settings(database_url=database_url, **overrides)
        # The inbox polls rarely here: these tests look at what intake stored.
        return create_app(settings, github=RecordingGitHub(payload={}),
                          inbox_options=InboxOptions(poll_seconds=3600))
    return make


@pytest.fixture
async def client(aiohttp_client: Any, intake_app: Callable[..., web.Application]
                 ) -> AsyncIterator[TestClient]:
    app = intake_app()
    client = await aiohttp_client(app)
    # Keep the dispatch worker from taking rows while the tests inspect them.
    await app[BOT_KEY].inbox.close()
    yield client


async def stored(client: TestClient) -> list[Any]:
    engine = client.app[BOT_KEY].engine
    async with engine.connect() as conn:
        return list((await conn.execute(select(deliveries).order_by(deliveries.c.id))).all())


async def test_accepted_delivery_is_stored_before_the_answer(client: TestClient) -> None:
    body = json.dumps(PAYLOAD).encode()
    headers = signed(body, delivery="d-1")
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 202
    rows = await stored(client)
    assert len(rows) == 1
    row = rows[0]
    assert (row.delivery_id, row.event, row.action, row.installation_id) == (
        "d-1", "issues", "opened", 77)
    assert row.payload == body  # the raw bytes, exactly as signed
    assert row.status == "pending" and row.received_at is not None


async def test_documented_signature_vector(aiohttp_client: Any,
                                           intake_app: Callable[..., web.Application]) -> None:
    client = await aiohttp_client(intake_app(github_webhook_secret=DOC_SECRET))
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "ping",
               "X-GitHub-Delivery": "vector", "X-Hub-Signature-256": DOC_SIGNATURE}
    # The signature holds, so the request gets past 401 to the JSON check.
    response = await client.post("/webhook", data=DOC_PAYLOAD, headers=headers)
    assert response.status == 400
    assert "not valid JSON" in (await response.json())["message"]
    tampered = await client.post("/webhook", data=b"Hello, World?", headers=headers)
    assert tampered.status == 401


async def test_duplicate_delivery_is_accepted_and_stored_once(client: TestClient) -> None:
    body = json.dumps(PAYLOAD).encode()
    headers = signed(body, delivery="same")
    answers = await asyncio.gather(*(client.post("/webhook", data=body, headers=headers)
                                     for _ in range(5)))
    assert [a.status for a in answers] == [202] * 5
    again = await client.post("/webhook", data=body, headers=headers)
    assert again.status == 202
    assert len(await stored(client)) == 1


@pytest.mark.parametrize("signature, reason", [
    (None, "missing X-Hub-Signature-256"),
    ("sha256=" + "0" * 64, "does not match"),
    ("sha1=" + "0" * 40, "must start with sha256="),
    ("garbage", "must start with sha256="),
])
async def test_unsigned_or_badly_signed_is_401(client: TestClient, signature: str | None,
                                               reason: str) -> None:
    body = json.dumps(PAYLOAD).encode()
    headers = signed(body)
    headers.pop("X-Hub-Signature-256")
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 401
    assert reason in (await response.json())["message"]
    assert await stored(client) == []


async def test_signed_with_another_secret_is_401(client: TestClient) -> None:
    body = json.dumps(PAYLOAD).encode()
    response = await client.post("/webhook", data=body, headers=signed(body, "other"))
    assert response.status == 401


@pytest.mark.parametrize("drop", ["X-GitHub-Event", "X-GitHub-Delivery"])
async def test_missing_github_headers_are_400(client: TestClient, drop: str) -> None:
    body = json.dumps(PAYLOAD).encode()
    headers = signed(body)
    headers.pop(drop)
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 400
    assert drop in (await response.json())["message"]


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b'"a string"', "not a JSON object"),
    (b"", "not valid JSON"),
])
async def test_body_that_is_not_a_json_object_is_400(client: TestClient, body: bytes,
                                                     reason: str) -> None:
    response = await client.post("/webhook", data=body, headers=signed(body))
    assert response.status == 400
    assert reason in (await response.json())["message"]


async def test_form_encoded_is_415(client: TestClient) -> None:
    body = b"payload=%7B%7D"
    headers = signed(body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 415
    assert "application/json" in (await response.json())["message"]


async def test_declared_oversize_body_is_refused_before_reading(client: TestClient) -> None:
    body = b"{}"
    headers = signed(body)
    headers["Content-Length"] = str(MAX_BODY_BYTES + 1)
    started = time.monotonic()
    # Only two bytes are ever sent: an answer proves the server did not wait for the rest.
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 413
    assert time.monotonic() - started < 5


async def test_streamed_oversize_body_is_413(client: TestClient) -> None:
    chunk = b" " * (1024 * 1024)
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b"{"
        for _ in range(40):  # 40 MiB, sent chunked with no Content-Length
            sent += len(chunk)
            yield chunk
        yield b"}"

    headers = signed(b"irrelevant")
    response = await client.post("/webhook", data=stream(), headers=headers)
    assert response.status == 413
    assert await stored(client) == []


async def test_database_down_is_503_and_ready_says_so(client: TestClient) -> None:
    bot = client.app[BOT_KEY]
    # A PostgreSQL that is not there: connection refused at once.
    dead = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    live = bot.engine
    bot.writer._engine = dead  # noqa: SLF001 - the failure this test is about
    bot.engine = dead
    try:
        body = json.dumps(PAYLOAD).encode()
        response = await client.post("/webhook", data=body, headers=signed(body))
        assert response.status == 503
        assert "database unavailable" in (await response.json())["message"]
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert "database unreachable" in " ".join((await ready.json())["problems"])
    finally:
        bot.writer._engine = live  # noqa: SLF001
        bot.engine = live
        await dead.dispose()
    # Back up: the same delivery is accepted once the database returns.
    body = json.dumps(PAYLOAD).encode()
    assert (await client.post("/webhook", data=body, headers=signed(body))).status == 202


async def test_setup_mode_refuses_webhooks_with_503(aiohttp_client: Any) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.setup_mode
    client = await aiohttp_client(create_app(settings))
    body = json.dumps(PAYLOAD).encode()
    response = await client.post("/webhook", data=body, headers=signed(body))
    assert response.status == 503
    assert "setup mode" in (await response.json())["message"]
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 503


async def test_health_and_readiness(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    # The inbox was stopped by the fixture, so readiness reports it.
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "dispatch worker is not running" in " ".join((await ready.json())["problems"])


async def test_ready_when_everything_runs(aiohttp_client: Any,
                                          intake_app: Callable[..., web.Application]) -> None:
    client = await aiohttp_client(intake_app())
    response = await client.get("/readyz")
    assert response.status == 200, await response.text()


@pytest.mark.parametrize("headers, body", [
    ({"X-GitHub-Event": "e" * 65, "X-GitHub-Delivery": "x" * 65}, b"{}"),
    ({"Content-Type": "application/json; charset=latin-1"}, b"\xff\xfe"),
    ({"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "z" * 64}, b"{}"),
    ({"Content-Type": "application/json", "X-GitHub-Event": "e", "X-GitHub-Delivery": "d",
      "X-Hub-Signature-256": "sha256="}, b"\x00" * 100),
])
async def test_malformed_input_never_gets_a_500(client: TestClient, headers: dict[str, str],
                                                body: bytes) -> None:
    response = await client.post("/webhook", data=body, headers=headers)
    assert 400 <= response.status < 500


async def test_many_concurrent_deliveries_are_all_stored(client: TestClient) -> None:
    bodies = [json.dumps({**PAYLOAD, "n": i}).encode() for i in range(200)]
    answers = await asyncio.gather(*(client.post("/webhook", data=b, headers=signed(b))
                                     for b in bodies))
    assert all(a.status == 202 for a in answers)
    engine = client.app[BOT_KEY].engine
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(deliveries))).scalar()
    assert count == 200
