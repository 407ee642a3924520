"""`agentbot serve`'s ports: a second one started by mistake on the same ports and SQLite file
stops at once, having taken nothing from the first; with the local executor, the ports only
sandboxes use listen on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.github import FakeGitHub
from tests.setup.test_flow_cli import environment, free_port, start

pytestmark = pytest.mark.slow
SECRET = "double-start-secret"


def serve_env(tmp_path: Path, fake_github: FakeGitHub, host: str, port: int, internal: int,
              gateway: int) -> dict[str, str]:
    return environment(
        GITHUB_API_URL=fake_github.url, GITHUB_APP_ID=str(fake_github.app_id),
        GITHUB_PRIVATE_KEY=fake_github.private_key_pem, GITHUB_WEBHOOK_SECRET=SECRET,
        AGENTBOT_HOST=host, AGENTBOT_PORT=str(port),
        AGENTBOT_INTERNAL_PORT=str(internal), AGENTBOT_GATEWAY_PORT=str(gateway),
        AGENTBOT_GATEWAY_PROXY_PORT=str(free_port()), AGENTBOT_EXECUTOR="local",
        AGENTBOT_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        AGENTBOT_LOCAL_STATE_DIR=str(tmp_path / "state"), AGENTBOT_LOG_FORMAT="text")


async def ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(200):
        try:
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    pytest.fail("agentbot never became ready")


async def test_a_second_serve_on_the_same_ports_exits_and_the_first_goes_on(
        tmp_path: Path, fake_github: FakeGitHub) -> None:
    port, internal, gateway = free_port(), free_port(), free_port()
    env = serve_env(tmp_path, fake_github, "127.0.0.1", port, internal, gateway)
    first = await start("serve", cwd=tmp_path, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await ready(session, base)

            began = time.monotonic()
            second = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "serve", cwd=tmp_path, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, stderr = await asyncio.wait_for(second.communicate(), 30)
            assert second.returncode == 2
            assert time.monotonic() - began < 15
            assert f"cannot listen on 127.0.0.1:{port}" in stderr.decode()
            assert "Traceback" not in stderr.decode()

            body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
            digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            async with session.post(f"{base}/webhook", data=body, headers={
                    "Content-Type": "application/json", "X-GitHub-Event": "ping",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": f"sha256={digest}"}) as response:
                assert response.status == 202
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 200
    finally:
        first.send_signal(signal.SIGTERM)
        await asyncio.wait_for(first.communicate(), 30)


def outside_address() -> str | None:
    """An address of this machine that is not loopback, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address  # noqa: S104


async def reachable(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except OSError:
        return False
    writer.close()
    return True


async def test_with_the_local_executor_the_sandbox_ports_listen_on_loopback_only(
        tmp_path: Path, fake_github: FakeGitHub) -> None:
    outside = outside_address()
    if outside is None:
        pytest.skip("this machine has no address but loopback")
    port, internal, gateway = free_port(), free_port(), free_port()
    env = serve_env(tmp_path, fake_github, "0.0.0.0", port, internal, gateway)  # noqa: S104
    process = await start("serve", cwd=tmp_path, env=env)
    try:
        async with aiohttp.ClientSession() as session:
            await ready(session, f"http://127.0.0.1:{port}")
        assert await reachable(outside, port)  # webhooks come from outside
        for sandbox_port in (internal, gateway, int(env["AGENTBOT_GATEWAY_PROXY_PORT"])):
            assert await reachable("127.0.0.1", sandbox_port)
            assert not await reachable(outside, sandbox_port)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 30)
