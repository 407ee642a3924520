"""What a hostile sender tries at the edges (issue 14, part 3), each reproduced over real HTTP:
a clear 4xx, nothing lost, nothing else hurt, never a 500."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.app import BOT_KEY, create_app, internal_app
from bot.cli.dryrun import RecordingGitHub
from bot.config.settings import Settings
from bot.intake.inbox import InboxOptions
from bot.logs import JsonFormatter
from bot.runs.callbacks import callback_key, run_token
from bot.store.tables import DeliveryStatus, deliveries
from tests.conftest import WEBHOOK_SECRET
from tests.intake.test_webhook import PAYLOAD, signed


@pytest.fixture
async def client(aiohttp_client: Any, make_settings: Callable[..., Settings],
                 database_url: str) -> AsyncIterator[TestClient]:
    settings = make_settings(database_url=database_url)
    app = create_app(settings, github=RecordingGitHub(payload={}),
                     inbox_options=InboxOptions(poll_seconds=3600, max_attempts=3,
                                                backoff_base_seconds=0.0))
    client = await aiohttp_client(app)
    await app[BOT_KEY].inbox.close()  # the tests drain it themselves
    yield client


async def raw(client: TestClient, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request written byte for byte (headers an HTTP client would refuse)."""
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                     + body)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[1]


def signed_raw(body: bytes, *, event: bytes = b"issues", delivery: bytes | None = None,
               extra: bytes = b"") -> bytes:
    digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return (b"POST /webhook HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
            b"X-GitHub-Event: " + event + b"\r\n"
            b"X-GitHub-Delivery: " + (delivery or str(uuid.uuid4()).encode()) + b"\r\n"
            b"X-Hub-Signature-256: sha256=" + digest.encode() + b"\r\n" + extra)


async def rows(client: TestClient) -> list[Any]:
    async with client.app[BOT_KEY].engine.connect() as conn:
        return list((await conn.execute(select(deliveries).order_by(deliveries.c.id))).all())


# --- unauthenticated requests that were 500s ------------------------------------------------

async def test_a_non_ascii_signature_is_refused_not_a_crash(client: TestClient) -> None:
    body = orjson.dumps(PAYLOAD)
    head = (b"POST /webhook HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
            b"X-GitHub-Event: issues\r\nX-GitHub-Delivery: d-1\r\n"
            b"X-Hub-Signature-256: sha256=" + b"\xe9" * 64 + b"\r\n")
    status, answer = await raw(client, head, body)
    assert status == 401 and b"Signature" in answer
    assert await rows(client) == []


async def test_a_body_that_is_not_the_gzip_it_claims_is_a_400(client: TestClient) -> None:
    body = orjson.dumps(PAYLOAD)
    status, answer = await raw(client, signed_raw(body, extra=b"Content-Encoding: gzip\r\n"),
                               body)
    assert status == 400 and b"Content-Encoding" in answer
    # A real gzip body is read.
    packed = gzip.compress(body)
    digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = await client.post("/webhook", data=packed, headers={
        **signed(body), "Content-Encoding": "gzip", "X-Hub-Signature-256": f"sha256={digest}"})
    assert response.status == 202


async def test_the_internal_port_refuses_odd_tokens_and_huge_run_ids(
        aiohttp_client: Any, client: TestClient) -> None:
    internal = await aiohttp_client(internal_app(client.app))
    key = callback_key(client.app[BOT_KEY].settings.private_key_pem() or "")
    status, _ = await raw(internal, b"POST /internal/runs/1/events HTTP/1.1\r\nHost: bot\r\n"
                                    b"Authorization: Bearer \xe9\xe9\xe9\r\n", b"[]")
    assert status == 401
    huge = 2**64
    response = await internal.post(f"/internal/runs/{huge}/events", json=[],
                                   headers={"Authorization": f"Bearer {run_token(key, huge)}"})
    assert response.status == 404
    response = await internal.put(f"/internal/runs/{2**63}/result", json={},
                                  headers={"Authorization": f"Bearer {run_token(key, 2**63)}"})
    assert response.status == 404


# --- one bad delivery among good ones -------------------------------------------------------

@pytest.mark.parametrize(("head", "why"), [
    ({"delivery": b"d\xff-1"}, b"X-GitHub-Delivery"),
    ({"event": b"iss\xffues"}, b"X-GitHub-Event"),
    ({"event": b"issues; drop"}, b"X-GitHub-Event"),
    ({"delivery": b"has space"}, b"X-GitHub-Delivery"),
])
async def test_a_bad_header_is_refused_alone_while_good_deliveries_land(
        client: TestClient, head: dict[str, bytes], why: bytes) -> None:
    good = [orjson.dumps({**PAYLOAD, "n": n}) for n in range(40)]
    bad = orjson.dumps({**PAYLOAD, "n": "bad"})
    answers = await asyncio.gather(
        *(client.post("/webhook", data=body, headers=signed(body)) for body in good),
        raw(client, signed_raw(bad, **head), bad))
    assert [a.status for a in answers[:-1]] == [202] * 40
    status, answer = answers[-1]
    assert status == 400 and why in answer
    assert len(await rows(client)) == 40


@pytest.mark.parametrize("installation", [2**63, -1, 0, 10**30])
async def test_an_installation_id_out_of_range_is_refused_alone(client: TestClient,
                                                                installation: int) -> None:
    good = [orjson.dumps({**PAYLOAD, "n": n}) for n in range(40)]
    bad = json.dumps({**PAYLOAD, "installation": {"id": installation}}).encode()
    answers = await asyncio.gather(
        *(client.post("/webhook", data=body, headers=signed(body)) for body in [*good, bad]))
    assert [a.status for a in answers[:-1]] == [202] * 40
    assert answers[-1].status == 400
    assert "installation.id" in (await answers[-1].json())["message"]
    assert len(await rows(client)) == 40


async def test_metrics_stay_up_after_an_odd_event_name(client: TestClient,
                                                       aiohttp_client: Any) -> None:
    body = orjson.dumps(PAYLOAD)
    await raw(client, signed_raw(body, event=b"\xff\xfe"), body)
    await client.post("/webhook", data=body, headers=signed(body, event="made_up_event"))
    internal = await aiohttp_client(internal_app(client.app))
    response = await internal.get("/metrics")
    assert response.status == 200
    text = await response.text()
    assert 'event="made_up_event"' not in text
    assert 'agentbot_deliveries_total{event="other",outcome="accepted"} 1.0' in text


def test_the_json_log_formatter_survives_undecodable_text() -> None:
    record = logging.LogRecord("bot", logging.WARNING, __file__, 1, "odd %s", ("\udcff",), None)
    record.event = "iss\udcffues"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "odd \\udcff" and line["event"] == "iss\\udcffues"


# --- poison deliveries ----------------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    {**PAYLOAD, "action": ["labeled"]},
    {**PAYLOAD, "action": "labeled", "label": {"name": "agent"}, "repository": "octo/repo",
     "issue": {"number": 1}, "sender": {"login": "octocat", "type": "User", "id": 1}},
    {**PAYLOAD, "action": "created", "issue": "x", "comment": {"body": "/agent go"},
     "repository": {"id": 1, "full_name": "o/r"}},
    {"action": "labeled", "installation": "7", "repository": {}, "issue": {}},
])
async def test_a_poison_delivery_fails_after_its_attempts_instead_of_forever(
        client: TestClient, payload: dict[str, Any]) -> None:
    event = "issue_comment" if "comment" in payload else "issues"
    body = orjson.dumps(payload)
    response = await client.post("/webhook", data=body, headers=signed(body, event=event))
    assert response.status == 202
    inbox = client.app[BOT_KEY].inbox
    for _ in range(10):
        await inbox.drain_once()
        [row] = await rows(client)
        if row.status == DeliveryStatus.FAILED:
            break
    assert row.status == DeliveryStatus.FAILED and row.attempts <= 3
    assert row.last_error


# --- replays --------------------------------------------------------------------------------

async def test_a_signed_body_posted_again_under_new_delivery_ids_is_a_replay(
        client: TestClient) -> None:
    body = orjson.dumps({**PAYLOAD, "action": "labeled"})
    first = await client.post("/webhook", data=body, headers=signed(body))
    assert first.status == 202
    for _ in range(3):
        again = await client.post("/webhook", data=body, headers=signed(body))
        assert again.status == 202  # as for a delivery stored already: nothing is stored
    assert len(await rows(client)) == 1


# --- memory and time ------------------------------------------------------------------------

async def test_unsigned_bodies_share_a_memory_budget(client: TestClient,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.intake import webhook

    monkeypatch.setattr(webhook, "UNVERIFIED_BUDGET_BYTES", 3 << 20)
    body = b"x" * (1 << 20)
    headers = signed(body)
    headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield body[: 1 << 19]
        await gate.wait()
        yield body[1 << 19:]

    posts = [asyncio.create_task(client.post("/webhook", data=slow(), headers=headers))
             for _ in range(8)]
    await asyncio.sleep(0.5)
    gate.set()
    statuses = sorted([(await post).status for post in posts])
    # The budget holds 3 MB: a few are read whole (and refused for their signature), the
    # rest are turned away before they are.
    assert 503 in statuses and set(statuses) <= {401, 503} and statuses.count(401) >= 2
    assert client.app[webhook.UNVERIFIED_KEY].held == 0  # all given back


async def test_a_body_that_crawls_is_cut_with_a_408(client: TestClient,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from bot.intake import webhook

    monkeypatch.setattr(webhook, "BODY_TIMEOUT_SECONDS", 0.5)
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    body = orjson.dumps(PAYLOAD)
    writer.write(signed_raw(body) + b"Content-Length: %d\r\n\r\n" % len(body) + body[:5])
    await writer.drain()
    answer = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert await rows(client) == []
    assert "Traceback" not in caplog.text


