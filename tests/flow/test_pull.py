"""`/agent` on a pull request: one more commit on its branch, a review comment's context,
a branch that moved, and pull requests from forks."""

from __future__ import annotations

import pytest

from bot.commands import replies
from bot.publish import publisher
from tests.fakes import payloads as p
from tests.flow.harness import REPO, Flow, until

pytestmark = pytest.mark.slow


async def test_a_pr_comment_adds_one_fast_forward_commit_to_its_branch(flow: Flow) -> None:
    pull = flow.fake.add_pull(REPO, head_ref="feature", files={"feature.txt": b"work\n"},
                              title="Add the feature")
    head = pull.pull.head_sha
    flow.plan(write={"feature.txt": "better work\n"}, summary="Improved it.")
    await flow.comment("/agent make it better", number=pull.number, on_pull_request=True)
    run = await flow.settled((await flow.wait_for_run()).id)
    assert (run.state, run.error) == ("succeeded", None)
    assert (run.is_pull_request, run.head_ref, run.base_sha) == (True, "feature", head)
    new_head = flow.branches()["feature"]
    assert new_head == run.commit_sha
    assert flow.fake.repo(REPO).git.read_commit(new_head)["parents"] == [head]
    assert flow.files("feature")["feature.txt"] == b"better work\n"
    assert len(flow.pulls()) == 1 and run.pr_number is None  # no new PR
    assert "on the branch feature of pull request" in flow.prompt()
    assert "make it better" in flow.prompt()
    [check] = flow.check_runs()
    assert (check.head_sha, check.conclusion) == (head, "success")
    assert check.output["title"] == "Pushed a commit to feature"
    [status] = flow.status_comments(pull.number)
    assert "feature" in status.body and run.commit_sha[:12] in status.body


async def test_a_review_comment_puts_file_line_and_hunk_in_the_prompt(flow: Flow) -> None:
    pull = flow.fake.add_pull(REPO, head_ref="feature", files={"src/app.py": b"print(1)\n"})
    hunk = "@@ -1 +1 @@\n-print('hello')\n+print(1)"
    made = flow.fake.add_review_comment(REPO, pull.number, "/agent use logging here",
                                        path="src/app.py", line=1, diff_hunk=hunk)
    data = p.review_comment("/agent use logging here", pull_number=pull.number,
                            head_ref="feature", head_sha=pull.pull.head_sha, base_ref="main",
                            path="src/app.py", line=1, diff_hunk=hunk)
    data["comment"]["id"] = made.id
    data["pull_request"]["head"]["repo"] = data["repository"]
    flow.plan(write={"src/app.py": "import logging\nlogging.info(1)\n"})
    await flow.deliver("pull_request_review_comment", data)
    run = await flow.settled((await flow.wait_for_run()).id)
    assert run.state == "succeeded", run.error
    assert run.trigger == "review_comment"
    prompt = flow.prompt()
    assert "written on src/app.py, line 1" in prompt and hunk in prompt
    assert flow.files("feature")["src/app.py"] == b"import logging\nlogging.info(1)\n"
    assert flow.fake.reactions("review_comment", made.id) == []  # the status comment answers


async def test_a_branch_that_moved_meanwhile_is_not_overwritten(flow: Flow) -> None:
    pull = flow.fake.add_pull(REPO, head_ref="feature")
    started_at = pull.pull.head_sha
    go = flow.tmp / "go"
    flow.plan(write={"feature.txt": "mine\n"}, wait_for=str(go))
    await flow.comment("/agent change it", number=pull.number, on_pull_request=True)
    run = await flow.wait_for_run()

    async def agent_running() -> bool:
        return flow.agent_started()

    await until(agent_running, what="the agent starting")
    pushed = flow.fake.push(REPO, {"feature.txt": b"someone else's\n"}, branch="feature")
    go.write_text("")
    run = await flow.settled(run.id)
    assert run.state == "failed"
    assert run.error == publisher.BRANCH_MOVED.format(
        branch="feature", base=started_at[:12], current=pushed[:18])
    assert flow.branches()["feature"] == pushed
    [status] = flow.status_comments(pull.number)
    assert "moved while the agent worked" in status.body


async def test_a_pr_from_a_fork_is_refused_with_a_reply(flow: Flow) -> None:
    pull = flow.fake.add_pull(REPO, head_ref="patch-1", fork=True, user="contributor")
    await flow.comment("/agent fix the typo", number=pull.number, on_pull_request=True)

    async def replied() -> bool:
        return bool(flow.replies(pull.number))

    await until(replied, what="a reply")
    assert await flow.runs() == []
    [reply] = flow.replies(pull.number)
    assert reply.startswith(replies.FORK_REFUSED.format(login="octocat",
                                                        head_repo=f"contributor/{p.REPO}"))


async def test_a_fork_pr_allowed_by_config_becomes_a_new_pr(flow: Flow) -> None:
    flow.fake.push(REPO, {".github/agentbot.yml": b"allow_forks: true\n"})
    pull = flow.fake.add_pull(REPO, head_ref="patch-1", fork=True, user="contributor",
                              files={"typo.txt": b"teh\n"}, title="Fix typo")
    flow.plan(write={"typo.txt": "the\n"}, summary="Fixed the typo properly.")
    await flow.comment("/agent fix the typo", number=pull.number, on_pull_request=True)
    run = await flow.settled((await flow.wait_for_run()).id)
    assert run.state == "succeeded", run.error
    assert run.branch == f"agentbot/{pull.number}-fix-typo" and run.head_ref is None
    head = flow.branches()[run.branch]
    assert flow.fake.repo(REPO).git.read_commit(head)["parents"] == [pull.pull.head_sha]
    assert flow.files(run.branch)["typo.txt"] == b"the\n"
    new = [i for i in flow.pulls() if i.number == run.pr_number][0]
    assert new.pull.base_ref == "main" and f"Builds on #{pull.number}" in new.body
    assert "from the fork contributor/" in flow.prompt()
