"""From a label or an `/agent` comment on an issue to a draft pull request, end to end."""

from __future__ import annotations

import base64

import pytest

from tests.fakes import payloads as p
from tests.flow.harness import REPO, Flow

pytestmark = pytest.mark.slow


async def test_label_to_draft_pull_request(flow_any_db: Flow) -> None:
    flow = flow_any_db
    flow.plan(write={"src/greet.py": "print('hi')\n", "README.md": "# hello, world\n"},
              delete=["docs/old.md"], chmod_x=["src/greet.py"], todo=["Write greet.py"],
              summary="Added a greeting script.")
    base = flow.branches()["main"]
    await flow.deliver("issues", p.issues_labeled())
    run = await flow.settled((await flow.wait_for_run()).id)
    assert (run.state, run.error) == ("succeeded", None)
    assert await flow.transitions(run.id) == ["queued", "starting", "running", "succeeded"]

    # One commit on agentbot/<n>-<slug>, on the base commit, with exactly the agent's changes.
    assert run.branch == "agentbot/42-add-a-greeting"
    head = flow.branches()[run.branch]
    assert head == run.commit_sha
    commit = flow.fake.repo(REPO).git.read_commit(head)
    assert commit["parents"] == [base]
    assert flow.files(run.branch) == {"README.md": b"# hello, world\n",
                                      "src/app.py": b"print('hello')\n",
                                      "src/greet.py": b"print('hi')\n"}
    assert flow.modes(run.branch)["src/greet.py"] == "100755"
    assert flow.branches()["main"] == base

    # A draft PR into the default branch, with the summary, Closes #N and the check run.
    [pull] = flow.pulls()
    assert (pull.number, run.pr_number) == (run.pr_number, pull.number)
    assert pull.pull.draft and pull.pull.base_ref == "main" and pull.pull.head_ref == run.branch
    assert pull.title == "Add a greeting"
    assert "Added a greeting script." in pull.body and f"Closes #{p.ISSUE_NUMBER}" in pull.body
    [check] = flow.check_runs()
    assert f"/runs/{check.id}" in pull.body
    assert [u.login for u in pull.pull.requested_reviewers] == ["octocat"]

    # The check run: on the base SHA, completed with success and a link to the PR.
    assert (check.head_sha, check.status, check.conclusion) == (base, "completed", "success")
    assert check.external_id == str(run.id) and check.actions == []
    assert f"pull request #{pull.number}" in check.output["title"].lower()
    assert run.pr_url in check.output["summary"]
    # One sticky comment, edited in place, ending with the PR.
    [status] = flow.status_comments()
    assert run.status_comment_id == status.id
    assert run.pr_url in status.body and "Added a greeting script." in status.body
    # The sandbox's read-only token is revoked.
    [token] = [t for t in flow.fake.state.tokens.values() if t.repository_ids]
    assert token.revoked and set(token.permissions.values()) == {"read"}


async def test_a_comment_on_an_issue_runs_with_its_instructions(flow: Flow) -> None:
    flow.plan(write={"hello.txt": "hi\n"}, summary="Wrote hello.txt")
    await flow.comment("Please.\n\n/agent --model big-1 keep it short\n")
    run = await flow.settled((await flow.wait_for_run()).id)
    assert run.state == "succeeded" and run.trigger == "comment" and run.model == "big-1"
    prompt = flow.prompt()
    assert "## Issue #42: Add a greeting" in prompt and "Say hi." in prompt
    assert "## Instructions from @octocat\nkeep it short" in prompt
    assert flow.files(run.branch)["hello.txt"] == b"hi\n"
    [pull] = flow.pulls()
    assert pull.number == run.pr_number


async def test_repo_config_applies_setup_instructions_and_draft(flow: Flow) -> None:
    flow.fake.push(REPO, {".github/agentbot.yml": (
        b"setup:\n  - echo set-up > setup-ran.txt\ninstructions: docs/agents.md\n"
        b"draft: false\n"), "docs/agents.md": b"Always add tests.\n"})
    flow.plan(write={"x.txt": "x\n"})
    await flow.deliver("issues", p.issues_labeled())
    run = await flow.settled((await flow.wait_for_run()).id)
    assert run.state == "succeeded", run.error
    assert "Always add tests." in flow.prompt()
    # The setup ran in the checkout before the agent (its output file is in the changeset).
    assert flow.files(run.branch)["setup-ran.txt"] == b"set-up\n"
    [pull] = flow.pulls()
    assert pull.pull.draft is False


async def test_no_changes_ends_neutral_with_the_summary(flow: Flow) -> None:
    flow.plan(summary="Nothing needed: it already greets.")
    await flow.deliver("issues", p.issues_labeled())
    run = await flow.settled((await flow.wait_for_run()).id)
    assert run.state == "succeeded" and run.result["status"] == "no_changes"
    [check] = flow.check_runs()
    assert (check.conclusion, check.output["title"]) == ("neutral", "No changes")
    assert "Nothing needed: it already greets." in check.output["summary"]
    [status] = flow.status_comments()
    assert "without changing any file" in status.body
    assert "Nothing needed: it already greets." in status.body
    assert flow.pulls() == [] and set(flow.branches()) == {"main"}


@pytest.mark.parametrize("plan, rule, path", [
    ({"write": {".github/workflows/ci.yml": "on: push\n"}}, "protected_path",
     ".github/workflows/ci.yml"),
    ({"write": {"config/key.pem": "-----BEGIN RSA PRIVATE KEY-----\n" + "A" * 64 +
                "\n-----END RSA PRIVATE KEY-----\n"}}, "secret", "config/key.pem"),
    ({"write": {".gitmodules": "[submodule \"x\"]\n"}}, "submodule", ".gitmodules"),
])
async def test_a_refused_result_fails_naming_rule_and_path(flow: Flow, plan: dict[str, object],
                                                           rule: str, path: str) -> None:
    flow.plan(**plan)
    await flow.deliver("issues", p.issues_labeled())
    run = await flow.settled((await flow.wait_for_run()).id)
    assert run.state == "failed" and run.publish_state == "refused"
    assert f"**{rule}** `{path}`" in run.error
    assert "BEGIN RSA" not in run.error
    assert flow.pulls() == [] and set(flow.branches()) == {"main"}
    [check] = flow.check_runs()
    assert check.conclusion == "failure" and f"`{path}`" in check.output["summary"]
    assert [a["identifier"] for a in check.actions] == ["retry"]
    [status] = flow.status_comments()
    assert rule in status.body and "/agent retry" in status.body


async def test_a_taken_branch_gets_the_run_id_appended(flow: Flow) -> None:
    flow.fake.push(REPO, {"other.txt": b"someone else's\n"}, branch="agentbot/42-add-a-greeting")
    flow.plan(write={"x.txt": "x\n"})
    await flow.deliver("issues", p.issues_labeled())
    run = await flow.settled((await flow.wait_for_run()).id)
    assert run.state == "succeeded" and run.branch == f"agentbot/42-add-a-greeting-{run.id}"
    assert "other.txt" not in flow.files(run.branch)


async def test_binary_files_go_through_blobs_byte_for_byte(flow: Flow) -> None:
    data = bytes(range(256)) * 3
    flow.plan(write_b64={"logo.bin": base64.b64encode(data).decode()})
    await flow.deliver("issues", p.issues_labeled())
    run = await flow.settled((await flow.wait_for_run()).id)
    assert run.state == "succeeded", run.error
    assert flow.files(run.branch)["logo.bin"] == data
    assert "POST /repos/{owner}/{repo}/git/blobs" in flow.github_writes()


async def test_requests_per_run_from_label_to_pull_request(flow: Flow) -> None:
    """The GitHub requests one run costs; the content-creating ones are what GitHub's
    secondary limit (80 a minute, 500 an hour) counts, and the README states their number."""
    flow.plan(write={"x.txt": "x\n"})
    flow.fake.requests.clear()  # the process's start-up (GET /app) is not the run's
    await flow.deliver("issues", p.issues_labeled())
    run = await flow.settled((await flow.wait_for_run()).id)
    assert run.state == "succeeded"
    calls = [r.operation for r in flow.fake.requests]
    progress = calls.count("PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}") - 1
    content = [r.operation for r in flow.fake.requests if r.method != "GET"
               and r.path.split("/")[1] != "app" and r.path != "/installation/token"]
    print(f"\nGitHub requests for one run, label to PR: {len(calls)}, {len(content)} "
          f"content-creating ({progress} of them progress)\n"
          + "\n".join(f"  {c}" for c in calls))
    # Creating effects: one each; no reaction (the status comment acknowledges).
    assert sorted(content) == sorted([
        "POST /repos/{owner}/{repo}/check-runs",
        "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
        "POST /repos/{owner}/{repo}/git/trees", "POST /repos/{owner}/{repo}/git/commits",
        "POST /repos/{owner}/{repo}/git/refs", "POST /repos/{owner}/{repo}/pulls",
        "POST /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
        "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}",
    ] + ["PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}"] * (1 + progress))
    assert len(content) - progress == 9  # README: "What one run costs on GitHub"
    assert len(calls) <= 17
    assert "POST /repos/{owner}/{repo}/git/blobs" not in calls  # text goes inline in the tree
