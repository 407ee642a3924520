"""A second `agentbot serve` started by mistake on the same ports and SQLite file stops at once,
having taken nothing from the first, which goes on answering."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
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


async def test_a_second_serve_on_the_same_ports_exits_and_the_first_goes_on(
        tmp_path: Path, fake_github: FakeGitHub) -> None:
    port, internal, gateway = free_port(), free_port(), free_port()
    env = environment(
        GITHUB_API_URL=fake_github.url, GITHUB_APP_ID=str(fake_github.app_id),
        GITHUB_PRIVATE_KEY=fake_github.private_key_pem, GITHUB_WEBHOOK_SECRET=SECRET,
        AGENTBOT_HOST="127.0.0.1", AGENTBOT_PORT=str(port),
        AGENTBOT_INTERNAL_PORT=str(internal), AGENTBOT_GATEWAY_PORT=str(gateway),
        AGENTBOT_GATEWAY_PROXY_PORT=str(free_port()), AGENTBOT_EXECUTOR="local",
        AGENTBOT_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        AGENTBOT_LOCAL_STATE_DIR=str(tmp_path / "state"), AGENTBOT_LOG_FORMAT="text")
    first = await start("serve", cwd=tmp_path, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"{base}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the first agentbot never became ready")

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
