"""Slow and numerous clients (issue 14, part 3), over real sockets: a connection without a
whole request head or body in time is cut with one log line; past the cap new connections are
refused while health checks and established connections go on."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from bot.app import BOT_KEY, create_app
from bot.cli.dryrun import RecordingGitHub
from bot.config.settings import Settings
from bot.connections import RESERVE_CONNECTIONS, GuardedSite, Limits, Listener, guarded_runner
from bot.intake import webhook
from tests.cli.test_serve_ports import SECRET, ready, serve_env
from tests.fakes.github import FakeGitHub
from tests.intake.test_hostile import signed_raw
from tests.intake.test_webhook import PAYLOAD, signed
from tests.setup.test_flow_cli import free_port, start

CUT = "cut the connection from"


@pytest.fixture
async def serve(make_settings: Callable[..., Settings]) -> AsyncIterator[Any]:
    """Start the public app on a real port behind a Listener with the given limits, as `serve`
    does; returns the port, the listener and the app."""
    runners: list[web.AppRunner] = []

    async def start(limits: Limits) -> tuple[int, Listener, web.Application]:
        app = create_app(make_settings(), github=RecordingGitHub(payload={}))
        listener = Listener("public", limits)
        runner = guarded_runner(app, listener, access_log=None)
        runners.append(runner)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        await GuardedSite(runner, sock, listener).start()
        return sock.getsockname()[1], listener, app

    yield start
    for runner in runners:
        await runner.cleanup()


async def ended(reader: asyncio.StreamReader, within: float) -> bytes:
    """What the server sent before it closed the connection (fails if it stays open)."""
    try:
        return await asyncio.wait_for(reader.read(), within)
    except ConnectionResetError:
        return b""


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server has closed this connection (without waiting long)."""
    try:
        return await asyncio.wait_for(reader.read(), 0.05) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def cuts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if CUT in r.getMessage()]


async def test_clients_without_a_whole_head_are_cut_each_with_one_line(
        serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    port, listener, _ = await serve(Limits(100, head_seconds=0.5, body_seconds=5))
    silent = await asyncio.open_connection("127.0.0.1", port)
    half = await asyncio.open_connection("127.0.0.1", port)
    half[1].write(b"POST /webhook HTTP/1.1\r\nHost: bot\r\n")
    trickle = await asyncio.open_connection("127.0.0.1", port)
    started = asyncio.get_running_loop().time()

    async def drip() -> None:
        # A byte of a header every 0.1 s: always something new, never a whole head.
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            trickle[1].write(bytes([byte]))
            await asyncio.sleep(0.1)

    dripping = asyncio.create_task(drip())
    try:
        for reader, _ in (silent, half, trickle):
            assert await ended(reader, 3) == b""
    finally:
        dripping.cancel()
        for _, writer in (silent, half, trickle):
            writer.close()
    assert asyncio.get_running_loop().time() - started < 2
    lines = cuts(caplog)
    assert len(lines) == 3 and listener.cuts == 3
    assert all("a request head did not arrive within 0.5 s" in line for line in lines)
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)
    assert listener.open == {}


async def test_a_keep_alive_connection_is_cut_only_when_its_next_head_crawls(
        serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    port, _, _ = await serve(Limits(100, head_seconds=0.5, body_seconds=5))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n")
    assert (await reader.readuntil(b'{"status": "ok"}')).startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.2)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n")  # within the time: served
    await reader.readuntil(b'{"status": "ok"}')
    writer.write(b"GET /healthz HTTP/1.1\r\n")  # the next one never ends
    assert await ended(reader, 3) == b""
    writer.close()
    assert [line.split(": ", 2)[-1] for line in cuts(caplog)] == [
        "the next request's head did not arrive within 0.5 s"]

    # Idle after an answer is no event: closed without a line.
    caplog.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n")
    await reader.readuntil(b'{"status": "ok"}')
    assert await ended(reader, 3) == b""
    writer.close()
    assert cuts(caplog) == []


async def test_a_stalled_body_is_cut_with_one_line_and_gives_its_budget_back(
        serve: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO)
    # The webhook's own 408 comes later here: the listener's deadline is what is tested.
    monkeypatch.setattr(webhook, "BODY_TIMEOUT_SECONDS", 30.0)
    port, _, app = await serve(Limits(100, head_seconds=5, body_seconds=0.5))
    body = orjson.dumps(PAYLOAD)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(signed_raw(body) + b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
    assert await ended(reader, 3) == b""
    writer.close()
    await asyncio.sleep(0.1)  # the handler sees its read fail
    lines = cuts(caplog)
    assert len(lines) == 1
    assert "the body of POST /webhook did not arrive within 0.5 s" in lines[0]
    assert not any(r.exc_info for r in caplog.records)
    assert app[webhook.UNVERIFIED_KEY].held == 0


async def test_a_client_that_leaves_mid_body_is_one_line_not_a_traceback(
        serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    port, _, app = await serve(Limits(100, head_seconds=5, body_seconds=5))
    body = orjson.dumps(PAYLOAD)
    for _ in range(3):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(signed_raw(body) + b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
    await asyncio.sleep(0.3)
    left = [r for r in caplog.records if "left mid-request" in r.getMessage()]
    assert len(left) == 3
    assert not any(r.exc_info for r in caplog.records)
    assert app[webhook.UNVERIFIED_KEY].held == 0


async def test_past_the_cap_new_connections_are_refused_but_health_and_established_ones_work(
        serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    port, listener, app = await serve(Limits(5, head_seconds=3, body_seconds=5,
                                             health_paths=frozenset({"/healthz"})))
    base = f"http://127.0.0.1:{port}"
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as established:
        async with established.get(f"{base}/healthz") as response:
            assert response.status == 200
        # The rest of the cap: slow clients that hold their connections.
        slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        for _, writer in slow:
            writer.write(b"POST /webhook HTTP/1.1\r\n")
        await asyncio.sleep(0.1)
        assert len(listener.open) == 5

        # A health check on a new connection is answered from the reserve...
        async with aiohttp.ClientSession() as fresh:
            async with fresh.get(f"{base}/healthz") as response:
                assert response.status == 200
            # ... anything else on a new connection is refused at once.
            body = orjson.dumps(PAYLOAD)
            async with fresh.post(f"{base}/webhook", data=body, headers=signed(body)) as refused:
                assert refused.status == 503
                assert "too many connections" in (await refused.json())["message"]
        # The established connection still delivers.
        body = orjson.dumps(PAYLOAD)
        async with established.post(f"{base}/webhook", data=body,
                                    headers=signed(body)) as response:
            assert response.status == 202
        assert len(connector._conns) == 1  # noqa: SLF001 - one connection did it all

        # A reserve filled by silent clients does not keep a health check out either: it
        # is trimmed back to its size, the silent ones going first.
        squatters = [await asyncio.open_connection("127.0.0.1", port)
                     for _ in range(RESERVE_CONNECTIONS + 4)]
        async with aiohttp.ClientSession() as fresh:
            for _ in range(3):
                async with fresh.get(f"{base}/healthz") as response:
                    assert response.status == 200
        await asyncio.sleep(0.2)
        assert len(listener.reserve) == RESERVE_CONNECTIONS
        assert [await closed(reader) for reader, _ in squatters].count(True) == 4
        for _, writer in [*slow, *squatters]:
            writer.close()
    assert listener.refused >= 5
    refusal_lines = [r for r in caplog.records if "refusing new ones" in r.getMessage()]
    assert len(refusal_lines) == 1  # one line a window, not one a connection
    assert app[BOT_KEY].writer is not None


@pytest.mark.slow
async def test_agentbot_serve_cuts_slow_clients_and_keeps_its_cap(
        tmp_path: Path, fake_github: FakeGitHub) -> None:
    port, internal = free_port(), free_port()
    env = serve_env(tmp_path, fake_github, "127.0.0.1", port, internal, free_port())
    env.update(AGENTBOT_MAX_CONNECTIONS="4", AGENTBOT_HEADER_TIMEOUT="3s")
    process = await start("serve", cwd=tmp_path, env=env)
    base = f"http://127.0.0.1:{port}"
    slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            await ready(session, base)  # this session's one connection stays open
            for each in (port, port, port, internal):
                slow.append(await asyncio.open_connection("127.0.0.1", each))
                slow[-1][1].write(b"POST /webhook HTTP/1.1\r\nHost: bot\r\n")
            await asyncio.sleep(0.2)
            async with aiohttp.ClientSession() as fresh:
                async with fresh.get(f"{base}/healthz") as response:
                    assert response.status == 200
                async with fresh.get(f"{base}/readyz") as response:
                    assert response.status == 200
                async with fresh.post(f"{base}/webhook", data=b"{}") as response:
                    assert response.status == 503
            body = json.dumps({"zen": "Design for failure.", "hook_id": 1}).encode()
            digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            async with session.post(f"{base}/webhook", data=body, headers={
                    "Content-Type": "application/json", "X-GitHub-Event": "ping",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": f"sha256={digest}"}) as response:
                assert response.status == 202
            for reader, _ in slow:
                assert await ended(reader, 6) == b""
    finally:
        for _, writer in slow:
            writer.close()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    log = stderr.decode()
    assert log.count(CUT) == 4, log
    assert log.count("public port: cut the connection") == 3
    assert log.count("internal port: cut the connection") == 1
    assert "a request head did not arrive within 3 s" in log
    assert log.count("refusing new ones") == 1
    assert "Traceback" not in log


def test_the_cap_is_lowered_to_fit_the_file_limit(monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    from bot import connections

    monkeypatch.setattr(connections.resource, "getrlimit", lambda _: (1024, 4096))
    cap, burst = connections.fit_to_file_limit(1000, ports=2)
    # Two ports full, reserves and all, and the process's own files stay below 1024.
    assert 2 * (cap + burst) + connections.OWN_FILES <= 1024
    assert cap >= 128 and burst >= RESERVE_CONNECTIONS
    assert "lowered from 1000 to" in caplog.text
    monkeypatch.setattr(connections.resource, "getrlimit", lambda _: (1_048_576, 1_048_576))
    assert connections.fit_to_file_limit(1000, ports=2) == (1000, connections.RESERVE_BURST)


async def test_a_request_that_does_not_parse_is_one_line_not_a_traceback(
        serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    port, _, _ = await serve(Limits(100, head_seconds=5, body_seconds=5))
    malformed = [b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                 b"GET /healthz HTTP/1.1\r\nHost: bot\r\nContent-Length: abc\r\n\r\n",
                 b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
                 b"POST /webhook HTTP/1.1\r\nHost: bot\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]
    for raw in malformed:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        assert (await ended(reader, 3)).startswith(b"HTTP/1.0 400")
        writer.close()
    await asyncio.sleep(0.1)
    lines = [r for r in caplog.records if "refused a malformed request" in r.getMessage()]
    assert len(lines) == len(malformed)
    assert not any(r.exc_info for r in caplog.records)
    assert "Bad Header" not in caplog.text  # the sender's bytes stay out of the log
