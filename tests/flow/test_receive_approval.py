"""`agentbot receive` with an outsider's command: it stops at the request, not at its time
limit, and reports the run awaiting approval."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.cli.receive import receive
from bot.config.settings import Settings
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.flow.harness import REPO, Flow

pytestmark = pytest.mark.slow


async def test_receive_stops_at_a_request_awaiting_approval(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBOT_LOCAL_STATE_DIR", str(tmp_path / "state"))
    flow = await Flow.create(fake_github, tmp_path, make_settings,
                             f"sqlite+aiosqlite:///{tmp_path / 'receive.db'}")
    try:
        comment = fake_github.add_comment(REPO, p.ISSUE_NUMBER, "/agent do it", user="reader")
        data = p.issue_comment("/agent do it", login="reader", comment_id=comment.id)
        data["repository"]["clone_url"] = flow.git_url
        payload = tmp_path / "comment.json"
        payload.write_text(json.dumps(data))
        async with asyncio.timeout(60):  # the run's time limit is 30 minutes
            report = await receive(flow.settings, "issue_comment", payload, dry_run=False,
                                   delivery_id="receive-1")
    finally:
        await flow.close()
    assert "run #1 new -> awaiting_approval" in report
    assert report.split("# outcome\n")[1].startswith("run #1: awaiting_approval")
    [check] = fake_github.check_runs(REPO)
    assert [a["identifier"] for a in check.actions] == ["approve", "deny"]
