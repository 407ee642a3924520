"""Cancel and retry from every entry point, and the time limit, end to end."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.fakes import payloads as p
from tests.flow.harness import Flow, until

pytestmark = pytest.mark.slow


async def running_agent(flow: Flow, index: int = 0) -> int:
    """The pid of the scripted agent once it runs (it waits for a file that never comes)."""
    async def started() -> bool:
        return flow.agent_started(index)

    await until(started, what="the agent starting")
    return int((flow.logs / f"pid-{index}").read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def assert_cancelled(flow: Flow, run_id: int, pid: int) -> Any:
    run = await flow.settled(run_id)
    assert run.state == "cancelled"

    async def gone() -> bool:
        return not alive(pid)

    await until(gone, what="the agent's process ending")
    [check] = flow.check_runs()
    assert (check.status, check.conclusion) == ("completed", "cancelled")
    assert [a["identifier"] for a in check.actions] == ["retry"]
    [status] = flow.status_comments()
    assert "cancelled" in status.body
    tokens = [t for t in flow.fake.state.tokens.values() if t.repository_ids]
    assert tokens and all(t.revoked for t in tokens)
    assert flow.pulls() == []
    return run


def button(flow: Flow, identifier: str | None, run: Any) -> dict[str, Any]:
    [check] = [c for c in flow.check_runs() if c.external_id == str(run.id)]
    fields = {"id": check.id, "external_id": str(run.id), "head_sha": check.head_sha,
              "name": "agentbot", "status": check.status, "conclusion": check.conclusion}
    if identifier is None:
        return p.check_run_rerequested(**fields)
    return p.check_run_action(identifier, **fields)


async def test_agent_cancel_stops_a_running_run(flow: Flow) -> None:
    flow.plan(wait_for=str(flow.tmp / "never"))
    await flow.deliver("issues", p.issues_labeled())
    run = await flow.wait_for_run()
    pid = await running_agent(flow)
    await flow.comment("/agent cancel")
    await assert_cancelled(flow, run.id, pid)


async def test_the_cancel_button_stops_a_running_run(flow: Flow) -> None:
    flow.plan(wait_for=str(flow.tmp / "never"))
    await flow.deliver("issues", p.issues_labeled())
    run = await flow.wait_for_run()
    pid = await running_agent(flow)

    async def check_has_cancel() -> bool:
        checks = flow.check_runs()
        return bool(checks) and [a["identifier"] for a in checks[0].actions] == ["cancel"]

    await until(check_has_cancel, what="the Cancel button")
    await flow.deliver("check_run", button(flow, "cancel", run))
    await assert_cancelled(flow, run.id, pid)


async def test_agent_retry_runs_a_failed_run_again(flow: Flow) -> None:
    flow.plan(fail=True, summary="The tests would not pass.")
    await flow.deliver("issues", p.issues_labeled())
    first = await flow.settled((await flow.wait_for_run()).id)
    assert first.state == "failed" and "The tests would not pass." in first.error
    [check] = flow.check_runs()
    assert check.conclusion == "failure"
    flow.plan(write={"x.txt": "x\n"})
    await flow.comment("/agent retry")
    second = await flow.settled((await flow.wait_for_run(2)).id)
    assert (second.state, second.retry_of, second.trigger) == ("succeeded", first.id, "retry")
    assert second.pr_number is not None and len(flow.check_runs()) == 2
    assert len(flow.status_comments()) == 2


@pytest.mark.parametrize("identifier", ["retry", None])
async def test_the_retry_button_and_re_run_retry_a_failed_run(flow: Flow,
                                                              identifier: str | None) -> None:
    flow.plan(fail=True)
    await flow.deliver("issues", p.issues_labeled())
    first = await flow.settled((await flow.wait_for_run()).id)
    assert first.state == "failed"
    flow.plan(write={"x.txt": "x\n"})
    await flow.deliver("check_run", button(flow, identifier, first))
    second = await flow.settled((await flow.wait_for_run(2)).id)
    assert (second.state, second.retry_of) == ("succeeded", first.id)


async def test_a_run_past_its_time_limit_ends_timed_out(flow: Flow) -> None:
    flow.plan(sleep=60)
    await flow.comment("/agent --timeout 3s hurry")
    run = await flow.wait_for_run()
    pid = await running_agent(flow)
    run = await flow.settled(run.id, seconds=60)
    assert run.state == "timed_out" and run.timeout_seconds == 3

    async def gone() -> bool:
        return not alive(pid)

    await until(gone, what="the agent's process ending")
    [check] = flow.check_runs()
    assert check.conclusion == "timed_out"
    assert [a["identifier"] for a in check.actions] == ["retry"]
    [status] = flow.status_comments()
    assert "time limit (3s)" in status.body
