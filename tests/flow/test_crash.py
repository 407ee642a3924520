"""Kill the bot at each step between intake and pull request; the restarted bot completes the
run with exactly one check run, one status comment, one branch and one pull request."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes import payloads as p
from tests.flow.harness import Flow, until

pytestmark = pytest.mark.slow

# Each step: the request that reaches GitHub (which carries it out) while the bot dies
# before it hears the answer, so that the bot cannot know whether it was made.
STEPS = [
    ("POST", "/repos/{owner}/{repo}/check-runs"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("POST", "/repos/{owner}/{repo}/git/trees"),
    ("POST", "/repos/{owner}/{repo}/git/commits"),
    ("POST", "/repos/{owner}/{repo}/git/refs"),
    ("POST", "/repos/{owner}/{repo}/pulls"),
    ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers"),
    ("DELETE", "/installation/token"),
]


async def assert_one_of_each(flow: Flow) -> None:
    run = await flow.settled((await flow.wait_for_run()).id)
    assert len(await flow.runs()) == 1
    assert (run.state, run.error) == ("succeeded", None)
    assert len(flow.check_runs()) == 1
    [check] = flow.check_runs()
    assert (check.status, check.conclusion) == ("completed", "success")
    assert len(flow.status_comments()) == 1
    assert run.pr_url in flow.status_comments()[0].body
    assert set(flow.branches()) == {"main", run.branch}
    [pull] = flow.pulls()
    assert pull.number == run.pr_number
    assert [u.login for u in pull.pull.requested_reviewers] == ["octocat"]
    # The status comment is the acknowledgement: no reaction besides it.
    assert flow.fake.reactions("issue", flow.fake.state.issues[
        (f"{p.OWNER}/{p.REPO}", p.ISSUE_NUMBER)].id) == []


@pytest.mark.parametrize("method, template", STEPS, ids=[f"{m} {t}" for m, t in STEPS])
async def test_a_crash_at_each_github_step_leaves_one_of_each(flow: Flow, method: str,
                                                               template: str) -> None:
    flow.plan(write={"x.txt": "x\n"}, summary="Done.")
    if template == "/app/installations/{installation_id}/access_tokens":
        await flow.bot.github.tokens.get(p.INSTALLATION_ID)  # the bot's own token first
    hung = flow.fake.hang_after(method, template)
    await flow.deliver("issues", p.issues_labeled())
    await asyncio.wait_for(hung.wait(), 60)
    await flow.stop()
    await flow.start()
    await assert_one_of_each(flow)


async def test_a_crash_while_the_agent_works_adopts_its_sandbox(flow: Flow) -> None:
    go = flow.tmp / "go"
    flow.plan(write={"x.txt": "x\n"}, wait_for=str(go))
    await flow.deliver("issues", p.issues_labeled())

    async def agent_running() -> bool:
        return flow.agent_started()

    await until(agent_running, what="the agent starting")
    await flow.stop()
    await flow.start()
    go.write_text("")
    await assert_one_of_each(flow)
    assert not flow.agent_started(1)  # the same sandbox finished: none was started again
