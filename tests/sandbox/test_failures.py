"""How `python -m sandbox` fails: one exit code per step, a failed result that says why."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox import exitcodes
from tests.sandbox.support import (
    GATEWAY_TOKEN,
    Site,
    make_site,
    run_sandbox,
    start_sandbox,
)


@pytest.fixture
async def site(tmp_path: Path, aiohttp_server: Any) -> Site:
    return await make_site(tmp_path, aiohttp_server)


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def failed_result(site: Site) -> dict[str, Any]:
    [result] = site.bot.results
    assert result["status"] == "failed"
    assert result["changes"] == [] and result["commit_message"] == ""
    return result


async def test_a_wrong_token_fails_the_checkout(site: Site) -> None:
    wrong = "ghs_NotTheRightToken000000000000000000"
    outcome = await run_sandbox(site.tmp, site.spec(), gateway_token=wrong)

    assert outcome.returncode == exitcodes.CHECKOUT == 11
    assert site.git.requests and not any(ok for _, _, ok in site.git.requests)  # 401s
    summary = failed_result(site)["summary"]
    assert summary.startswith("Checkout failed: git fetch of")
    assert wrong not in summary + outcome.stderr + json.dumps(site.bot.events)
    assert outcome.termination is not None and outcome.termination.startswith("checkout failed")
    assert outcome.report is None  # the agent never ran
    assert site.bot.kinds("phase")[-1] == {"phase": "checkout", "status": "failed",
                                           "reason": summary}


async def test_a_failing_setup_command_stops_the_run(site: Site) -> None:
    outcome = await run_sandbox(site.tmp, site.spec(setup=["echo before", "echo oops >&2; exit 7",
                                                           "echo never"]))

    assert outcome.returncode == exitcodes.SETUP == 12
    summary = failed_result(site)["summary"]
    assert summary.startswith("Setup command 2 (`echo oops >&2; exit 7`) exited with code 7.")
    assert "oops" in summary
    texts = [log["text"] for log in site.bot.kinds("log")]
    assert "before" in texts and "never" not in texts
    assert outcome.report is None


async def test_a_failing_agent_fails_the_run_with_its_last_words(site: Site) -> None:
    outcome = await run_sandbox(site.tmp, site.spec(prompt="mode: fail"))

    assert outcome.returncode == exitcodes.AGENT == 13
    summary = failed_result(site)["summary"]
    assert summary.startswith("The agent exited with code 3.")
    assert "boom: the agent could not finish" in summary
    assert outcome.termination is not None and outcome.termination.startswith("agent failed: ")


async def test_a_failing_agent_leaves_its_changes_so_far_with_the_failed_result(
        site: Site) -> None:
    outcome = await run_sandbox(site.tmp, site.spec(prompt="mode: edit-then-fail"))

    assert outcome.returncode == exitcodes.AGENT
    [result] = site.bot.results
    assert result["status"] == "failed" and result["commit_message"] == ""
    assert result["summary"].startswith("The agent exited with code 1.")
    assert [change["path"] for change in result["changes"]] == ["README.md"]
    assert base64.b64decode(result["changes"][0]["content_b64"]) == b"# Demo\n\nHalf done.\n"
    assert result["stats"]["partial"] is True and result["stats"]["failed_phase"] == "agent"
    assert {"phase": "changeset", "status": "succeeded", "partial": True}.items() <= \
        site.bot.kinds("phase")[-2].items()


async def test_an_agent_that_cannot_start_fails_the_run(site: Site) -> None:
    outcome = await run_sandbox(site.tmp, site.spec(agent_command=["/nonexistent/agent-cli"]))

    assert outcome.returncode == exitcodes.AGENT
    assert failed_result(site)["summary"].startswith(
        "Could not start the command agent (/nonexistent/agent-cli)")


async def test_an_agent_past_the_time_limit_is_killed_with_its_children(site: Site) -> None:
    began = time.monotonic()
    outcome = await run_sandbox(site.tmp, site.spec(prompt="mode: sleep", timeout=3))

    assert outcome.returncode == exitcodes.TIMEOUT == 16
    assert time.monotonic() - began < 10
    summary = failed_result(site)["summary"]
    assert summary == "The agent ran past the run's time limit of 3s and was stopped."
    report = outcome.report
    assert report is not None
    assert not pid_alive(report["pid"]) and not pid_alive(report["child_pid"])
    assert site.bot.kinds("phase")[-1]["status"] == "timed_out"
    assert outcome.termination == f"timed out: {summary}"


async def test_setup_past_its_own_limit_times_out(site: Site) -> None:
    outcome = await run_sandbox(site.tmp, site.spec(setup=["sleep 30"], setup_timeout=1))

    assert outcome.returncode == exitcodes.TIMEOUT
    assert "ran past the setup time limit of 1s" in failed_result(site)["summary"]
    assert site.bot.kinds("phase")[-1] == {
        "phase": "setup", "status": "timed_out", "reason": failed_result(site)["summary"]}


@pytest.mark.parametrize(("mode", "limit", "message"), [
    ("submodule", 100, "'vendored' is a submodule"),
    ("escape-symlink", 100, "symlink 'sneaky' points outside the repository"),
    ("edit", 3, "8 files changed; the limit is 3"),
])
async def test_a_changeset_that_breaks_the_rules_is_refused(site: Site, mode: str, limit: int,
                                                            message: str) -> None:
    outcome = await run_sandbox(site.tmp, site.spec(prompt=f"mode: {mode}",
                                                    max_changed_files=limit))

    assert outcome.returncode == exitcodes.CHANGESET == 14
    assert message in failed_result(site)["summary"]


async def test_a_result_too_large_is_refused(site: Site) -> None:
    outcome = await run_sandbox(site.tmp, site.spec(max_result_bytes=300))

    assert outcome.returncode == exitcodes.CHANGESET
    assert "the limit is 300" in failed_result(site)["summary"]


async def test_the_result_upload_retries_on_503(site: Site) -> None:
    site.bot.result_statuses = [503, 503]
    outcome = await run_sandbox(site.tmp, site.spec())

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    assert site.bot.result_attempts == 3
    assert [r["status"] for r in site.bot.results] == ["succeeded"]


async def test_a_result_the_bot_already_has_counts_as_delivered(site: Site) -> None:
    site.bot.result_statuses = [409]
    outcome = await run_sandbox(site.tmp, site.spec())

    assert outcome.returncode == exitcodes.OK
    assert site.bot.result_attempts == 1


async def test_a_refused_result_is_not_retried_and_fails_the_upload(site: Site) -> None:
    site.bot.result_statuses = [403]
    outcome = await run_sandbox(site.tmp, site.spec())

    assert outcome.returncode == exitcodes.UPLOAD == 15
    assert site.bot.result_attempts == 1
    assert outcome.termination == "result upload failed: PUT /result refused with HTTP 403"


@pytest.mark.parametrize("spec", [
    {"run_id": 1},
    {"run_id": 1, "agent": "command", "limits": {"timeout_seconds": 0}},
])
async def test_a_bad_spec_exits_without_reporting(tmp_path: Path, spec: dict[str, Any]) -> None:
    outcome = await run_sandbox(tmp_path, spec)

    assert outcome.returncode == exitcodes.BAD_SPEC == 10
    assert outcome.termination is not None and outcome.termination.startswith("bad spec: ")


async def test_sigterm_stops_the_agent_and_reports_nothing(site: Site) -> None:
    process = await start_sandbox(site.tmp, site.spec(prompt="mode: sleep"))
    report_file = site.tmp / "agent-report.json"
    for _ in range(200):
        if await asyncio.to_thread(has_child_pid, report_file):
            break
        await asyncio.sleep(0.05)
    report = json.loads(report_file.read_text())

    process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), 15)

    assert process.returncode == exitcodes.TERMINATED
    assert not pid_alive(report["pid"]) and not pid_alive(report["child_pid"])
    assert site.bot.results == []
    assert GATEWAY_TOKEN not in err.decode()


def has_child_pid(path: Path) -> bool:
    return path.exists() and "child_pid" in path.read_text()


def test_exit_codes_are_distinct_and_described() -> None:
    codes = [exitcodes.OK, exitcodes.INTERNAL, exitcodes.BAD_SPEC, exitcodes.CHECKOUT,
             exitcodes.SETUP, exitcodes.AGENT, exitcodes.CHANGESET, exitcodes.UPLOAD,
             exitcodes.TIMEOUT, exitcodes.TERMINATED]
    assert len(set(codes)) == len(codes)
    assert exitcodes.describe(12) == "setup failed"
    assert exitcodes.describe(-9) == "killed by signal 9"
    assert exitcodes.describe(137) == "killed by signal 9"
    assert exitcodes.describe(None) == "no exit code"
    assert os.EX_OK == exitcodes.OK
