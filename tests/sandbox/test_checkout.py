"""The checkout rides out a gateway that is briefly away, and gives up at once on a refusal."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sandbox import checkout as co
from tests.sandbox.support import GATEWAY_TOKEN, GitHttpServer, git, make_repository


class FlakyGitServer(GitHttpServer):
    """Answers the first `failures` requests with `status`, then serves as git would."""

    def __init__(self, root: Path, token: str, failures: int, status: int) -> None:
        super().__init__(root, token)
        self.failures, self.status = failures, status

    async def handle(self, request: web.Request) -> web.Response:
        if self.failures > 0:
            self.failures -= 1
            self.requests.append((request.method, request.path, False))
            return web.Response(status=self.status, text="unavailable")
        return await super().handle(request)


async def _checkout(tmp_path: Path, aiohttp_server: Any, failures: int,
                    status: int) -> tuple[FlakyGitServer, str, Path, list[str]]:
    bare, sha = make_repository(tmp_path / "git")
    server = FlakyGitServer(bare.parent, GATEWAY_TOKEN, failures, status)
    url = str((await aiohttp_server(server.app())).make_url("/demo.git"))
    workspace, lines = tmp_path / "workspace", []

    def run() -> None:
        co.checkout(workspace=workspace, clone_url=url, base_sha=sha, base_ref="main",
                    branch="agentbot/1", token=GATEWAY_TOKEN, env={"PATH": "/usr/bin:/bin"},
                    deadline=time.monotonic() + 60,
                    on_line=lambda stream, text: lines.append(text))

    try:
        await asyncio.to_thread(run)
    except co.CheckoutError as exc:
        lines.append(f"error: {exc}")
    return server, sha, workspace, lines


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(co, "RETRY_FIRST_SECONDS", 0.05)


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_a_briefly_failing_server_is_tried_again(
        tmp_path: Path, aiohttp_server: Any, status: int) -> None:
    server, sha, workspace, lines = await _checkout(tmp_path, aiohttp_server, 3, status)

    assert git(workspace, "rev-parse", "HEAD") == sha
    assert sum("trying again" in line for line in lines) == 3
    assert server.failures == 0


async def test_a_refusal_is_not_tried_again(tmp_path: Path, aiohttp_server: Any) -> None:
    server, _, workspace, lines = await _checkout(tmp_path, aiohttp_server, 100, 403)

    assert lines[-1].startswith("error: git fetch of")
    assert not any("trying again" in line for line in lines)
    # The SHA fetch and the branch fetch that stands in for it: one request each.
    assert len(server.requests) == 2


def test_transient_failures_are_told_apart_from_refusals() -> None:
    assert co.is_transient(["fatal: unable to access 'http://gw/x.git/': Failed to connect "
                            "to gw port 8082 after 0 ms: Couldn't connect to server"])
    assert co.is_transient(["fatal: unable to access 'http://gw/x.git/': The requested URL "
                            "returned error: 503"])
    assert not co.is_transient(["fatal: unable to access 'http://gw/x.git/': The requested "
                                "URL returned error: 403"])
    assert not co.is_transient(["fatal: couldn't find remote ref deadbeef"])
