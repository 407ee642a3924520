"""The group's status comment: each variant's row, its links, and what the footer asks for."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

from bot.report.group_comment import group_comment_body, links_of, variant_row
from bot.report.text import Usage, _outcome, check_name

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
CHECK = "https://github.example/o/r/runs/77"


def variant(k: int, state: str, **values: Any) -> SimpleNamespace:
    fields: dict[str, Any] = {
        "id": 10 + k, "variant": k, "state": state, "agent": "claude", "model": "opus",
        "result": None, "started_at": NOW - dt.timedelta(minutes=3), "finished_at": None,
        "branch": None, "commit_sha": None, "base_sha": "b" * 40, "pr_number": None,
        "pr_url": None, "head_ref": None, "config": {"variants": [["claude", "opus"]] * 3}}
    fields.update(values)
    return SimpleNamespace(**fields)


def group(**values: Any) -> SimpleNamespace:
    fields: dict[str, Any] = {"id": 4, "size": 3, "sender_login": "octocat", "retry_of": None,
                              "pick_state": None, "picked_variant": None, "picked_by": None,
                              "pick_error": None}
    fields.update(values)
    return SimpleNamespace(**fields)


def succeeded(k: int) -> SimpleNamespace:
    return variant(k, "succeeded", finished_at=NOW - dt.timedelta(seconds=30),
                   branch=f"agentbot/42-x-v{k}", commit_sha="c" * 40,
                   result={"status": "succeeded", "changes": [{}, {}],
                           "stats": {"files_changed": 2, "additions": 10, "deletions": 3}})


def test_a_finished_variants_row_has_its_changes_time_usage_and_links() -> None:
    run = succeeded(2)
    usage = Usage(input=1000, output=234, cost=0.0425)
    links = links_of(run, CHECK, "https://bot.example/runs/12", deleted=False)
    row = variant_row(run, usage, links, NOW)
    assert row.startswith("| 2 | `claude` | `opus` | ✅ succeeded | 2 | +10 −3 | 2m 30s | ")
    assert "1,234 tokens, $0.04" in row or "1,234 tokens, $0.0425" in row
    assert "[check run](https://github.example/o/r/runs/77)" in row
    assert "[run page](https://bot.example/runs/12)" in row
    assert f"[compare](https://github.example/o/r/compare/{'b' * 40}...agentbot/42-x-v2)" in row


def test_a_running_variant_shows_no_changes_yet_and_a_deleted_branch_no_compare() -> None:
    row = variant_row(variant(1, "running"), None, [], NOW)
    assert row == "| 1 | `claude` | `opus` | 🔄 running | – | – | 3m 0s | – | – |\n"
    assert not any("compare" in link for link in links_of(succeeded(3), CHECK, None,
                                                           deleted=True))
    assert links_of(succeeded(3), None, None, deleted=False) == []


def test_the_footer_follows_the_group() -> None:
    running = [succeeded(1), variant(2, "failed"), variant(3, "running")]
    assert "1 of 3" not in group_comment_body(group(), running, [])  # 2 have finished
    assert "2 of 3 finished" in group_comment_body(group(), running, [])
    assert "fills in as the variants finish" in group_comment_body(group(), running, [])
    done = [succeeded(1), variant(2, "failed"), succeeded(3)]
    assert "Keep one: comment `/agent pick K`" in group_comment_body(group(), done, [])
    failed = [variant(k, "failed") for k in (1, 2, 3)]
    body = group_comment_body(group(retry_of=2), failed, [])
    assert "No variant succeeded" in body and "`/agent retry`" in body
    assert "(a retry of group 2)" in body
    picked = [succeeded(1), variant(2, "failed"), succeeded(3)]
    picked[2].pr_number, picked[2].pr_url = 7, "https://github.example/o/r/pull/7"
    body = group_comment_body(group(pick_state="done", picked_variant=3, picked_by="mona"),
                              picked, [])
    assert "@mona picked variant 3: draft pull request #7 https://github.example/o/r/pull/7" \
        in body
    body = group_comment_body(group(pick_state="failed", picked_variant=1, picked_by="mona",
                                    pick_error="the branch moved"), picked, [])
    assert "could not carry it out: the branch moved" in body
    assert body.rstrip().endswith("<!-- agentbot:status_comment:group-4 -->")


def test_secrets_in_a_pick_error_are_masked() -> None:
    token = "ghp_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5"  # placeholders like ghp_aaa… stay
    body = group_comment_body(group(pick_state="failed", picked_variant=1, picked_by="mona",
                                    pick_error=f"GitHub said {token}"), [succeeded(1)], [])
    assert token not in body


def test_a_variants_check_run_is_named_for_it() -> None:
    assert check_name(variant(2, "queued")) == "agentbot: variant 2 of 3"
    assert check_name(SimpleNamespace(variant=None, config={})) == "agentbot"


def test_a_succeeded_variants_check_run_says_how_to_keep_it() -> None:
    run = succeeded(2)
    run.is_pull_request, run.error = False, None
    assert "To keep this variant, comment `/agent pick 2`" in _outcome(run, None)


async def test_two_replicas_write_one_group_comment(engine: Any, fake_github: Any,
                                                    github_app: Any) -> None:
    import asyncio
    import uuid

    from bot.report.reporter import Reporter
    from bot.runs.groups import create_group, get_group
    from bot.runs.ledger import NewRun

    fake_github.add_installation(7, "octo-org")
    fake_github.add_repo("octo-org", "demo", repo_id=100)
    fake_github.add_issue("octo-org/demo", 1)
    new = NewRun(installation_id=7, repo_id=100, repo_full_name="octo-org/demo",
                 clone_url="https://github.com/octo-org/demo.git", number=1,
                 is_pull_request=False, base_ref="main", trigger="comment",
                 sender_login="octocat", sender_id=1, delivery_id=str(uuid.uuid4()),
                 agent="claude", timeout_seconds=600)
    made = await create_group(engine, new, [("claude", "a"), ("claude", "b")])
    one, two = Reporter(engine, github_app), Reporter(engine, github_app)
    fake_github.requests.clear()
    # Both see the new group at once; one writes, the other finds it taken and leaves it.
    await asyncio.gather(one.report_group(made.group_id), two.report_group(made.group_id))
    await one.report_group(made.group_id)
    assert [r.operation for r in fake_github.requests
            if r.method != "GET" and not r.path.startswith("/app/")] == [
        "POST /repos/{owner}/{repo}/issues/{issue_number}/comments"]
    comments = [c for c in fake_github.comments("octo-org/demo", 1) if c.via_app]
    assert len(comments) == 1 and "0 of 2 finished" in comments[0].body
    group = await get_group(engine, made.group_id)
    assert (group.reported_version, group.status_comment_id, group.lease_owner) == (
        1, comments[0].id, None)
