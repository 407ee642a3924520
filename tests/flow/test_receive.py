"""`agentbot receive` without --dry-run: one payload, the whole path, against GITHUB_API_URL."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.cli.receive import receive
from bot.config.settings import Settings
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.flow.harness import REPO, Flow

pytestmark = pytest.mark.slow


async def test_receive_runs_a_label_through_to_a_pull_request(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBOT_LOCAL_STATE_DIR", str(tmp_path / "state"))
    # The scripted agent reads its plan from this test's directory under /tmp, which
    # bubblewrap hides behind a private /tmp: this test is about `receive`, not isolation
    # (tests/flow/test_isolation.py runs a whole flow under bubblewrap).
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None
                        if name == "bwrap" else which(name, *args, **kwargs))
    flow = await Flow.create(fake_github, tmp_path, make_settings,
                             f"sqlite+aiosqlite:///{tmp_path / 'receive.db'}")
    try:
        flow.plan(write={"hello.txt": "hello\n"}, summary="Said hello.")
        data = p.issues_labeled()
        data["repository"]["clone_url"] = flow.git_url
        issue = fake_github.state.issues[(REPO, p.ISSUE_NUMBER)]
        data["issue"].update(title=issue.title, body=issue.body)
        payload = tmp_path / "labeled.json"
        payload.write_text(json.dumps(data))
        report = await receive(flow.settings, "issues", payload, dry_run=False,
                               delivery_id="receive-1")
    finally:
        await flow.close()
    [pull] = fake_github.pulls(REPO)
    assert "run #1 new -> queued" in report
    outcome = report.split("# outcome\n")[1]
    assert outcome.startswith("run #1: succeeded, pull request ")
    assert outcome.rstrip().endswith(f"/pull/{pull.number}")
    assert fake_github.files(REPO, pull.pull.head_ref)["hello.txt"][1] == b"hello\n"
    [check] = fake_github.check_runs(REPO)
    assert check.conclusion == "success"


async def test_receive_follows_every_variant_of_a_group(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBOT_LOCAL_STATE_DIR", str(tmp_path / "state"))
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None
                        if name == "bwrap" else which(name, *args, **kwargs))
    flow = await Flow.create(fake_github, tmp_path, make_settings,
                             f"sqlite+aiosqlite:///{tmp_path / 'receive.db'}")
    try:
        flow.plan(by_model={"a": {"write": {"a.txt": "a\n"}}, "b": {"fail": True}})
        body = "/agent --model a,b go"
        made = fake_github.add_comment(REPO, p.ISSUE_NUMBER, body, user="octocat")
        data = p.issue_comment(body, number=p.ISSUE_NUMBER, comment_id=made.id)
        data["repository"]["clone_url"] = flow.git_url
        payload = tmp_path / "comment.json"
        payload.write_text(json.dumps(data))
        report = await receive(flow.settings, "issue_comment", payload, dry_run=False,
                               delivery_id="receive-2")
    finally:
        await flow.close()
    outcome = report.split("# outcome\n")[1]
    assert "run #1: succeeded, commit " in outcome and "-v1\n" in outcome
    assert "run #2: failed" in outcome
    assert fake_github.pulls(REPO) == []
