"""`agentbot setup` and `agentbot serve` in setup mode, as processes, against the fake GitHub."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from bot.__main__ import main
from bot.config.settings import Settings
from bot.setup.page import STATE_COOKIE
from tests.fakes.github import FakeGitHub

pytestmark = pytest.mark.slow
PUBLIC_URL = "https://agentbot.example.com"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(**values: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "AGENTBOT_"))}
    return {**clean, "PYTHONUNBUFFERED": "1", **values}


async def start(*args: str, cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    # unsafe: keep cookies of IP-address hosts, as a browser on 127.0.0.1 does.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def create_app_through(browser: aiohttp.ClientSession, page_url: str,
                             fake_github: FakeGitHub, code: str) -> str:
    """What a person does: open the page, confirm on GitHub, land on the callback."""
    async with browser.get(page_url) as response:
        assert response.status == 200
        assert "manifest" in await response.text()
    state = browser.cookie_jar.filter_cookies(URL(page_url))[STATE_COOKIE].value
    fake_github.add_manifest_code(code)  # what GitHub does when the person confirms
    async with browser.get(page_url.rstrip("/") + "/setup/callback",
                           params={"code": code, "state": state}) as response:
        page = await response.text()
        assert response.status == 200, page
        return page


async def test_setup_command_writes_env_and_stops(
        fake_github: FakeGitHub, browser: aiohttp.ClientSession, tmp_path: Path) -> None:
    fake_github.html_url = fake_github.url
    process = await start("setup", "--port", "0", "--public-url", PUBLIC_URL, cwd=tmp_path,
                          env=environment(GITHUB_API_URL=fake_github.url))
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("Open http://127.0.0.1:"), line
        page_url = line.split()[1]
        page = await create_app_through(browser, page_url, fake_github, "cli-code")
        assert "agentbot serve" in page
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert f"/apps/{fake_github.app_slug}/installations/new" in out.decode()
    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.github_app_id == fake_github.app_id and settings.app_problems() == []
    output = out.decode() + err.decode()
    assert fake_github.manifest_webhook_secret not in output and "PRIVATE KEY" not in output


async def test_serve_in_setup_mode_starts_the_bot_once_the_app_exists(
        fake_github: FakeGitHub, browser: aiohttp.ClientSession, tmp_path: Path) -> None:
    fake_github.html_url = fake_github.url
    port, internal = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    process = await start("serve", cwd=tmp_path, env=environment(
        GITHUB_API_URL=fake_github.url, AGENTBOT_HOST="127.0.0.1", AGENTBOT_PORT=str(port),
        AGENTBOT_INTERNAL_PORT=str(internal), AGENTBOT_EXECUTOR="local",
        # The gateway's ports too: the defaults may be taken on a shared machine.
        AGENTBOT_GATEWAY_PORT=str(free_port()), AGENTBOT_GATEWAY_PROXY_PORT=str(free_port()),
        AGENTBOT_LOG_FORMAT="text"))
    try:
        async def answers(url: str) -> int | None:
            try:
                async with browser.get(url) as response:
                    return response.status
            except aiohttp.ClientConnectionError:
                return None

        for _ in range(300):
            if await answers(f"{base}/healthz") == 200:
                break
            await asyncio.sleep(0.05)
        assert await answers(f"{base}/readyz") == 503  # setup mode is not ready
        await create_app_through(browser, f"{base}/", fake_github, "serve-code")

        # Same process, same port: the bot now takes webhooks signed with the new secret.
        body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
        digest = hmac.new(fake_github.manifest_webhook_secret.encode(), body,
                          hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-GitHub-Event": "ping",
                   "X-GitHub-Delivery": "after-setup-1",
                   "X-Hub-Signature-256": f"sha256={digest}"}
        status = None
        for _ in range(300):
            try:
                async with browser.post(f"{base}/webhook", data=body,
                                        headers=headers) as response:
                    status = response.status
            except aiohttp.ClientConnectionError:
                status = None
            if status == 202:
                break
            await asyncio.sleep(0.05)
        assert status == 202
        assert await answers(f"{base}/") == 404  # the setup page is gone
        assert await answers(f"http://127.0.0.1:{internal}/healthz") == 200
        assert process.returncode is None
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
    _, err = await process.communicate()
    log = err.decode()
    assert "setup mode: open" in log
    assert fake_github.manifest_webhook_secret not in log and "PRIVATE KEY-----" not in log
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600


def test_setup_refuses_without_a_public_url_or_with_an_app_configured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        app_private_key: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["setup"]) == 2
    assert "--public-url" in capsys.readouterr().err
    monkeypatch.setenv("GITHUB_APP_ID", "12")
    monkeypatch.setenv("GITHUB_PRIVATE_KEY", app_private_key)
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "a-secret-of-enough-length")
    assert main(["setup", "--public-url", PUBLIC_URL]) == 2
    assert "configured already" in capsys.readouterr().err
