"""`python -m sandbox` end to end: real git over HTTP, a scripted agent, a recording bot."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from sandbox import exitcodes, sessions
from tests.sandbox.support import (
    BINARY_CONTENT,
    CALLBACK_TOKEN,
    GATEWAY_TOKEN,
    ROOT,
    RUN_ID,
    Site,
    b64,
    git,
    make_site,
    run_sandbox,
)


@pytest.fixture
async def site(tmp_path: Path, aiohttp_server: Any) -> Site:
    return await make_site(tmp_path, aiohttp_server)


EXPECTED_CHANGES: list[dict[str, Any]] = [
    {"path": "README.md", "mode": "100644", "content_b64": b64(b"# Demo\n\nHello, edited.\n")},
    {"path": "assets/blob.bin", "mode": "100644", "content_b64": b64(BINARY_CONTENT)},
    {"path": "docs/a.md", "deleted": True},
    {"path": "docs/b.md", "mode": "100644", "content_b64": b64(b"moved content\n")},
    {"path": "link-to-readme", "mode": "120000", "content_b64": b64(b"README.md")},
    {"path": "old.txt", "deleted": True},
    {"path": "scripts/run.sh", "mode": "100755", "content_b64": b64(b"#!/bin/sh\necho run\n")},
    {"path": "src/new_module.py", "mode": "100644", "content_b64": b64(b"VALUE = 42\n")},
]


async def test_a_run_uploads_the_changeset_byte_for_byte(site: Site) -> None:
    outcome = await run_sandbox(site.tmp, site.spec(setup=["echo preparing", "true"]))

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    [result] = site.bot.results
    assert result["status"] == "succeeded"
    # Sorted by path, binary and symlink content exact, modes kept, the rename as delete+add,
    # the ignored notes.log absent.
    assert result["changes"] == EXPECTED_CHANGES
    assert result["summary"] == "Update the README and add a module\n\nAlso moved docs/a.md."
    assert result["commit_message"].startswith("Update the README and add a module\n\n")
    assert result["stats"]["files_changed"] == 8
    assert result["stats"]["bytes"] == sum(len(base64.b64decode(c["content_b64"]))
                                           for c in EXPECTED_CHANGES if "content_b64" in c)
    assert outcome.termination == "succeeded: 8 files changed"


async def test_events_arrive_in_order_with_phases_and_agent_progress(site: Site) -> None:
    await run_sandbox(site.tmp, site.spec(setup=["echo preparing"]))

    seqs = [event["seq"] for event in site.bot.events]
    assert sorted(seqs) == list(range(1, len(seqs) + 1))  # none lost, none repeated
    assert all(isinstance(body, list) for body in site.bot.event_bodies)  # batched
    phases = [(p["phase"], p["status"]) for p in site.bot.kinds("phase")]
    assert phases == [("checkout", "started"), ("checkout", "succeeded"),
                      ("setup", "started"), ("setup", "succeeded"),
                      ("agent", "started"), ("agent", "succeeded"),
                      ("changeset", "started"), ("changeset", "succeeded"),
                      ("upload", "started")]
    logs = [(log["source"], log["stream"], log["text"]) for log in site.bot.kinds("log")]
    assert ("setup", "runner", "$ echo preparing") in logs
    assert ("setup", "stdout", "preparing") in logs
    assert ("agent", "stdout", "plain progress line") in logs
    assert ("agent", "stderr", "a warning on stderr") in logs
    todos = site.bot.kinds("todo")
    assert [item["status"] for item in todos[-1]["items"]] == ["completed", "completed"]
    assert site.bot.kinds("tool") == [{"name": "edit", "status": "completed", "input": "README.md"}]
    assert site.bot.kinds("message")[0]["text"].startswith("Update the README")
    assert all(e["ts"].endswith("Z") for e in site.bot.events)


async def test_the_token_reaches_git_as_a_header_and_nothing_else(site: Site) -> None:
    outcome = await run_sandbox(site.tmp, site.spec(setup=[
        f"cat {site.tmp / 'spec' / 'gateway-token'} || echo token-file-gone"]))

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    # The git server refuses requests without the header, so every fetch carried it.
    assert site.git.requests and all(authorized for _, _, authorized in site.git.requests)
    basic = base64.b64encode(f"x-access-token:{GATEWAY_TOKEN}".encode()).decode()
    report = outcome.report
    assert report is not None
    for secret in (GATEWAY_TOKEN, CALLBACK_TOKEN, basic):
        assert secret not in json.dumps(site.bot.events)
        assert secret not in json.dumps(site.bot.results)
        assert secret not in outcome.stderr + outcome.stdout
        assert secret not in json.dumps(report["env"])
        assert secret not in json.dumps(report["argv"])
        assert secret not in (site.tmp / "workspace" / ".git" / "config").read_text()
    # The only git config the agent inherits is the trust of its own workspace.
    assert report["env"]["GIT_CONFIG_KEY_0"] == "safe.directory"
    assert report["env"]["GIT_CONFIG_COUNT"] == "1"
    # The runner forgot the token files it could remove, before setup and agent ran.
    assert ("setup", "stdout", "token-file-gone") in [
        (log["source"], log["stream"], log["text"]) for log in site.bot.kinds("log")]


async def test_the_agent_gets_its_prompt_and_a_clean_environment(site: Site) -> None:
    spec = site.spec(prompt="mode: edit\nPlease fix issue #3.")
    outcome = await run_sandbox(site.tmp, spec)

    report = outcome.report
    assert report is not None
    prompt_file = report["env"]["AGENTBOT_PROMPT_FILE"]
    assert report["argv"][1] == prompt_file  # {prompt_file} substituted, no shell involved
    assert report["prompt"] == report["stdin"] == "mode: edit\nPlease fix issue #3."
    assert not Path(prompt_file).is_relative_to(site.tmp / "workspace")
    assert report["cwd"] == str(site.tmp / "workspace")
    assert report["env"]["AGENTBOT_RUN_ID"] == str(RUN_ID)
    assert report["env"]["OPERATOR_AGENT_API_KEY"] == "sk-operator-key-for-the-agent"
    hidden = {"AGENTBOT_SPEC_DIR", "AGENTBOT_WORKSPACE", "AGENTBOT_TERMINATION_LOG"}
    assert hidden.isdisjoint(report["env"])
    assert str(ROOT) not in report["env"].get("PYTHONPATH", "")  # the runner's own path
    assert report["pgid"] == report["pid"]  # its own process group, for the kill on timeout


async def test_an_agent_without_changes_reports_no_changes(site: Site) -> None:
    outcome = await run_sandbox(site.tmp, site.spec(prompt="mode: noop"))

    assert outcome.returncode == exitcodes.OK
    [result] = site.bot.results
    assert (result["status"], result["changes"]) == ("no_changes", [])
    assert result["summary"] == "Nothing needed changing."
    assert result["commit_message"] == ""


def use_protocol_v0(home: Path) -> None:
    home.mkdir(parents=True)
    (home / ".gitconfig").write_text("[protocol]\n\tversion = 0\n")


async def test_the_fetch_falls_back_to_the_branch_when_a_sha_is_refused(site: Site) -> None:
    # A newer commit on main makes the base SHA unadvertised; over protocol v0 (set in the
    # runner's global git config) the server then refuses it by SHA, as some servers do.
    work = Path(site.git.project_root) / "work"
    git(work, "commit", "--allow-empty", "-qm", "later")
    git(work, "push", "-q", str(Path(site.git.project_root) / "demo.git"), "main")
    use_protocol_v0(site.tmp / "home")

    outcome = await run_sandbox(site.tmp, site.spec())

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    workspace = site.tmp / "workspace"
    assert git(workspace, "rev-parse", "HEAD") == site.base_sha
    assert git(workspace, "symbolic-ref", "HEAD") == f"refs/heads/agentbot/run-{RUN_ID}"
    adverts = [path for _, path, _ in site.git.requests if path.endswith("/info/refs")]
    assert len(adverts) == 2  # the refused SHA, then the branch


async def test_what_the_runner_uploads_validates_with_the_bots_own_models(site: Site) -> None:
    # Imported here: the bot's internal API is another part; this pins the contract.
    from bot.runs.callbacks import MAX_EVENT_DATA_BYTES, MAX_EVENTS_BYTES, EventsBody, Result

    await run_sandbox(site.tmp, site.spec(setup=["seq 1 300"]))
    await run_sandbox(site.tmp / "again", site.spec(prompt="mode: fail"))

    assert len(site.bot.results) == 2
    for result in site.bot.results:
        Result.model_validate(result)
    for body in site.bot.event_bodies:
        assert len(json.dumps(body)) <= MAX_EVENTS_BYTES
        for event in EventsBody.validate_python(body):
            assert len(json.dumps(event.data)) <= MAX_EVENT_DATA_BYTES


async def test_a_background_service_from_setup_lives_until_the_run_ends(site: Site) -> None:
    pid_file = site.tmp.parent / "service.pid"
    # The service keeps setup's output pipe open: the runner must not wait for it forever.
    outcome = await run_sandbox(site.tmp, site.spec(setup=[f"sleep 300 & echo $! > {pid_file}"]),
                                env={"SCRIPTED_AGENT_WATCH": str(pid_file)})

    assert outcome.returncode == 0, outcome.stderr
    assert outcome.report is not None and outcome.report["watched_alive"] is True
    assert process_gone(int(pid_file.read_text()))


def process_gone(pid: int) -> bool:
    fields = sessions.stat_fields(pid)
    return fields is None or fields[0] == "Z"


async def test_the_changeset_ignores_a_work_tree_the_agent_moved(site: Site) -> None:
    outcome = await run_sandbox(site.tmp, site.spec(prompt="mode: worktree-trick"))

    assert outcome.returncode == 0, outcome.stderr
    assert [c["path"] for c in site.bot.results[0]["changes"]] == ["README.md"]
