"""`agentbot gateway`: the gateway alone, on the bot's database, as its Deployment runs it."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config.settings import Settings
from bot.gateway import credentials
from bot.gateway.app import gateway_app
from bot.gateway.credentials import gateway_key
from bot.gateway.runs import RunGrants
from bot.runs.ledger import transition
from bot.store.tables import RunState, gateway_audit
from tests.cli.test_cli import agentbot
from tests.fakes.github import FakeGitHub
from tests.runs.test_callbacks import queue_run
from tests.runs.test_scheduler import GitHubGit


async def test_the_gateway_alone_serves_a_runs_fetch_and_refuses_the_rest(
        aiohttp_client: Any, aiohttp_server: Any, engine: AsyncEngine, database_url: str,
        fake_github: FakeGitHub, make_settings: Callable[..., Settings],
        tmp_path: Path) -> None:
    fake_github.add_installation(7, "octo-org")
    fake_github.add_repo("octo-org", "demo", repo_id=100, files={"README.md": b"# demo\n"})
    git_server = await aiohttp_server(GitHubGit(fake_github).app())
    settings = make_settings(database_url=database_url, github_api_url=fake_github.url,
                             github_app_id=fake_github.app_id,
                             github_private_key=fake_github.private_key_pem,
                             github_webhook_secret=None, host="127.0.0.1")
    run_id = await queue_run(engine, installation_id=7, repo_id=100, number=1,
                             repo_full_name="octo-org/demo",
                             clone_url=str(git_server.make_url("/octo-org/demo.git")))
    client = await aiohttp_client(gateway_app(settings))
    credential = credentials.issue(gateway_key(settings.private_key_pem() or ""), run_id)
    url = str(client.make_url("/git/octo-org/demo.git"))

    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    # A queued run is not served yet: its sandbox does not exist.
    assert (await git(tmp_path / "a", url, credential))[0] != 0
    await transition(engine, run_id, RunState.STARTING, "test")
    code, out = await git(tmp_path / "b", url, credential)
    assert code == 0, out
    assert (tmp_path / "b" / "README.md").read_bytes() == b"# demo\n"
    # The model APIs answer in their own shape: here, not configured.
    response = await client.post("/anthropic/v1/messages", json={},
                                 headers={"x-api-key": credential})
    assert response.status == 503 and (await response.json())["type"] == "error"
    # The egress proxy listens on its port and refuses an unknown credential.
    reader, writer = await asyncio.open_connection("127.0.0.1", settings.gateway_proxy_port)
    writer.write(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n"
                 b"Proxy-Authorization: Bearer agw_1_forged\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 407")
    writer.close()
    await writer.wait_closed()
    async with engine.connect() as conn:
        kinds = (await conn.execute(select(gateway_audit.c.kind).where(
            gateway_audit.c.run_id == run_id))).scalars().all()
    assert "git" in kinds and "model" in kinds


async def git(target: Path, url: str, credential: str) -> tuple[int, str]:
    header = base64.b64encode(f"x-access-token:{credential}".encode()).decode()
    process = await asyncio.create_subprocess_exec(
        "git", "-c", f"http.extraHeader=Authorization: Basic {header}", "clone", "-q", url,
        str(target), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "GIT_TERMINAL_PROMPT": "0"})
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


def test_the_gateway_command_needs_the_apps_key_but_not_the_webhook_secret(
        tmp_path: Path) -> None:
    done = agentbot("gateway", env={"GITHUB_APP_ID": "12"}, cwd=tmp_path)
    assert done.returncode == 2
    assert "GITHUB_PRIVATE_KEY" in done.stderr and "WEBHOOK" not in done.stderr


async def test_a_run_change_in_process_refuses_an_ended_runs_credential_at_once(
        engine: AsyncEngine, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    key = gateway_key(settings.private_key_pem() or "")
    grants = RunGrants(engine, key, ttl_seconds=3600)  # a cache that would outlive the run
    run_id = await queue_run(engine, installation_id=7, repo_id=100, number=1,
                             repo_full_name="octo-org/demo")
    await transition(engine, run_id, RunState.STARTING, "test")
    credential = credentials.issue(key, run_id)
    assert await grants.grant(credential) is not None
    await transition(engine, run_id, RunState.CANCELLED, "test")
    assert await grants.grant(credential) is not None  # still cached
    grants.forget()
    assert await grants.grant(credential) is None
    assert await grants.grant(credential[:-1] + ("A" if credential[-1] != "A" else "B")) is None
