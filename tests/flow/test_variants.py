"""Variants end to end: N runs of one request, one table that fills in, and `/agent pick`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.store.tables import run_groups, run_transitions
from tests.fakes import payloads as p
from tests.flow.harness import REPO, Flow, until

pytestmark = pytest.mark.slow

MODELS = ("m-one", "m-two", "m-three")


def gated(flow: Flow, plans: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """A plan per model, each waiting for a file of its own: the test says when each ends."""
    gates = {model: flow.tmp / f"go-{model}" for model in plans}
    flow.plan(by_model={model: {**plan, "wait_for": str(gates[model])}
                        for model, plan in plans.items()})
    return gates


def group_comment(flow: Flow) -> Any:
    [status] = flow.status_comments()
    assert "status_comment:group-" in status.body
    return status


async def groups_of(flow: Flow) -> list[Any]:
    async with flow.bot.engine.connect() as conn:  # type: ignore[union-attr]
        return list((await conn.execute(select(run_groups).order_by(run_groups.c.id))).all())


async def table_shows(flow: Flow, finished: int, seconds: float = 60.0) -> str:
    """The group comment once it says `finished` variants have finished."""
    async def shown() -> bool:
        comments = flow.status_comments()
        return len(comments) == 1 and f"{finished} of 3 finished" in comments[0].body

    await until(shown, seconds, what=f"the table with {finished} finished")
    return str(group_comment(flow).body)


def row(body: str, k: int) -> str:
    [line] = [line for line in body.splitlines() if line.startswith(f"| {k} |")]
    return line


async def three_variants(flow: Flow) -> list[Any]:
    """A group of three on the issue: variant 1 fails, 2 and 3 succeed with different trees;
    the table is checked as each one finishes."""
    gates = gated(flow, {
        "m-one": {"fail": True, "summary": "I could not do it."},
        "m-two": {"write": {"greet.py": "print('two')\n"}, "delete": ["docs/old.md"],
                  "summary": "Variant two."},
        "m-three": {"write": {"greet.py": "print('three')\n", "extra.txt": "3\n"},
                    "summary": "Variant three."},
    })
    await flow.comment(f"/agent run --variants 3 --model {','.join(MODELS)} add a greeting")
    await table_shows(flow, 0)
    variants = [await flow.wait_for_run(k) for k in (1, 2, 3)]
    assert [(v.variant, v.model) for v in variants] == list(enumerate(MODELS, start=1))
    assert len({v.group_id for v in variants}) == 1

    gates["m-one"].write_text("")
    body = await table_shows(flow, 1)
    assert "failed" in row(body, 1) and "succeeded" not in body
    assert any(state in row(body, 2) for state in ("queued", "starting", "running"))
    gates["m-two"].write_text("")
    body = await table_shows(flow, 2)
    assert "succeeded" in row(body, 2) and "| 2 | +1 −1 |" in row(body, 2)
    assert "/compare/" in row(body, 2) and "[check run](" in row(body, 2)
    assert "/agent pick" in body and "finish" in body
    gates["m-three"].write_text("")
    body = await table_shows(flow, 3)
    assert "succeeded" in row(body, 3) and "Keep one: comment `/agent pick K`" in body
    return [await flow.settled(v.id) for v in variants]


async def test_three_variants_fill_the_table_and_pick_opens_the_pr(flow_any_db: Flow) -> None:
    flow = flow_any_db
    base = flow.branches()["main"]
    one, two, three = await three_variants(flow)
    assert (one.state, two.state, three.state) == ("failed", "succeeded", "succeeded")
    # Each variant: its own branch off the base, a check run named for it, no PR.
    assert (two.branch, three.branch) == ("agentbot/42-add-a-greeting-v2",
                                          "agentbot/42-add-a-greeting-v3")
    assert one.branch is None or one.branch not in flow.branches()
    assert flow.pulls() == []
    names = sorted(c.name for c in flow.check_runs())
    assert names == [f"agentbot: variant {k} of 3" for k in (1, 2, 3)]
    tree_two = flow.files(two.branch)

    await flow.comment("/agent pick 2")

    async def picked() -> bool:
        return "picked variant 2" in group_comment(flow).body

    await until(picked, what="the pick in the comment")
    [pull] = flow.pulls()
    two = await flow.run(two.id)
    assert two.pr_number == pull.number
    assert pull.pull.head_ref == two.branch and pull.pull.base_ref == "main"
    assert pull.pull.draft and pull.title == "Add a greeting"
    assert "Variant two." in pull.body and f"Closes #{p.ISSUE_NUMBER}" in pull.body
    assert [u.login for u in pull.pull.requested_reviewers] == ["octocat"]
    # Variant 2's tree exactly, on one commit on the base.
    assert flow.files(pull.pull.head_ref) == tree_two == {
        "README.md": b"# hello\n", "src/app.py": b"print('hello')\n",
        "greet.py": b"print('two')\n"}
    assert flow.fake.repo(REPO).git.read_commit(two.commit_sha)["parents"] == [base]
    assert set(flow.branches()) == {"main", two.branch}
    body = group_comment(flow).body
    assert f"@octocat picked variant 2: draft pull request #{pull.number}" in body
    [group] = await groups_of(flow)
    assert (group.picked_variant, group.picked_by, group.pick_state) == (2, "octocat", "done")

    # A second pick is refused, and nothing else happens.
    await flow.comment("/agent pick 3")

    async def refused() -> bool:
        return any("picked variant 2 of group" in r for r in flow.replies())

    await until(refused, what="the reply to a second pick")
    assert len(flow.pulls()) == 1 and len(flow.status_comments()) == 1


async def test_a_crash_between_finishing_and_the_pick_loses_nothing(flow: Flow) -> None:
    await three_variants(flow)
    comment_id = group_comment(flow).id
    await flow.stop()
    await flow.start()
    await flow.comment("/agent pick 3")

    async def picked() -> bool:
        return "picked variant 3" in group_comment(flow).body

    await until(picked, what="the pick after the restart")
    assert [c.id for c in flow.status_comments()] == [comment_id]
    runs = await flow.runs()
    assert [r.state for r in runs] == ["failed", "succeeded", "succeeded"]
    [pull] = flow.pulls()
    assert pull.pull.head_ref == runs[2].branch
    assert set(flow.branches()) == {"main", runs[2].branch}


@pytest.mark.parametrize("method, template", [
    ("POST", "/repos/{owner}/{repo}/pulls"),
    ("DELETE", "/repos/{owner}/{repo}/git/refs/{ref}"),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
])
async def test_a_crash_during_the_pick_makes_one_pr(flow: Flow, method: str,
                                                    template: str) -> None:
    await three_variants(flow)
    await asyncio.sleep(0.3)  # the last table edit is out
    hung = flow.fake.hang_after(method, template)
    await flow.comment("/agent pick 2")
    await asyncio.wait_for(hung.wait(), 60)
    await flow.stop()
    await flow.start()

    async def picked() -> bool:
        comments = flow.status_comments()
        return len(comments) == 1 and "picked variant 2: draft pull request" in comments[0].body

    await until(picked, what="the pick resumed after the restart")
    runs = await flow.runs()
    [pull] = flow.pulls()
    assert pull.pull.head_ref == runs[1].branch == "agentbot/42-add-a-greeting-v2"
    assert set(flow.branches()) == {"main", runs[1].branch}
    assert len(flow.status_comments()) == 1


async def test_five_variants_run_two_at_a_time(fake_github: Any, tmp_path: Path,
                                               make_settings: Any) -> None:
    flow = await Flow.create(fake_github, tmp_path, make_settings,
                             f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}",
                             max_concurrent_runs=2)
    await flow.start()
    try:
        flow.plan(write={"x.txt": "x\n"}, sleep=0.4)
        await flow.comment("/agent run --variants 5 go")
        runs = [await flow.wait_for_run(k) for k in range(1, 6)]
        for run in runs:
            assert (await flow.settled(run.id, 120)).state == "succeeded"
        async with flow.bot.engine.connect() as conn:  # type: ignore[union-attr]
            moves = (await conn.execute(select(run_transitions).order_by(
                run_transitions.c.at, run_transitions.c.id))).all()
        # How many variants held a sandbox at once, from their recorded moves.
        held, most = 0, 0
        for move in moves:
            if move.to_state == "starting":
                held += 1
            elif move.to_state in ("succeeded", "failed", "cancelled", "timed_out"):
                held -= 1
            most = max(most, held)
        assert most == 2

        async def five() -> bool:
            return "5 of 5 finished" in group_comment(flow).body

        await until(five, what="the table with all five")
        assert len(set(flow.branches()) - {"main"}) == 5
    finally:
        await flow.close()


async def test_cancel_button_stops_one_variant_and_the_command_the_group(flow: Flow) -> None:
    flow.plan(wait_for=str(flow.tmp / "never"))
    await flow.comment("/agent --variants 3 --model a,b,c go")
    runs = [await flow.wait_for_run(k) for k in (1, 2, 3)]

    async def checks() -> bool:
        return len(flow.check_runs()) == 3

    await until(checks, what="three check runs")
    [check] = [c for c in flow.check_runs() if c.external_id == str(runs[1].id)]
    await flow.deliver("check_run", p.check_run_action(
        "cancel", id=check.id, external_id=str(runs[1].id), head_sha=check.head_sha,
        name=check.name, status=check.status))
    assert (await flow.settled(runs[1].id)).state == "cancelled"
    for other in (runs[0], runs[2]):
        assert (await flow.run(other.id)).state in ("queued", "starting", "running")
    # While the group runs, neither a run nor another group starts here.
    await flow.comment("/agent do something else")
    await flow.comment("/agent --variants 2 or this")

    async def told() -> bool:
        return sum("variants of group" in r and "still running" in r
                   for r in flow.replies()) == 2

    await until(told, what="two replies naming the running group")
    assert len(await flow.runs()) == 3

    await flow.comment("/agent cancel")
    for run in runs:
        assert (await flow.settled(run.id)).state == "cancelled"

    async def all_ended() -> bool:
        return "3 of 3 finished" in group_comment(flow).body

    await until(all_ended, what="the table with all three")
    assert "No variant succeeded" in group_comment(flow).body
    assert "/agent retry" in group_comment(flow).body

    # A retry runs the whole group again, with the same models.
    flow.plan(write={"x.txt": "x\n"})
    await flow.comment("/agent retry")
    again = [await flow.wait_for_run(k) for k in (4, 5, 6)]
    assert [r.model for r in again] == ["a", "b", "c"]
    assert len({r.group_id for r in again}) == 1 and again[0].group_id != runs[0].group_id
    for run in again:
        assert (await flow.settled(run.id)).state == "succeeded"


async def test_pick_is_for_writers_and_bad_requests_get_replies(flow: Flow) -> None:
    flow.fake.add_collaborator(REPO, "visitor", "read")
    flow.plan(write={"x.txt": "x\n"})
    await flow.comment("/agent --variants 2 --model a,b go")
    runs = [await flow.settled((await flow.wait_for_run(k)).id) for k in (1, 2)]
    assert [r.state for r in runs] == ["succeeded", "succeeded"]

    await flow.comment("/agent pick 1", login="visitor")
    await flow.comment("/agent pick")  # two succeeded: which one?
    await flow.comment("/agent pick 7")
    await flow.comment("/agent run --variants 9 go")
    await flow.comment("/agent run --variants 2 --agent claude,codex,command go")

    async def answered() -> bool:
        return len(flow.replies()) >= 5

    await until(answered, what="five replies")
    replies = flow.replies()
    assert any("only people with write access" in r for r in replies)
    assert any("variants 1, 2 succeeded: say which one" in r for r in replies)
    assert any("variant 7 cannot be picked: the group has 2 variants" in r for r in replies)
    assert any("9 variants is more than the 5" in r for r in replies)
    assert any("`--agent` names 3 values, but there are only 2 variants" in r
               for r in replies)
    [group] = await groups_of(flow)
    assert group.pick_state is None and flow.pulls() == []
    assert len(await flow.runs()) == 2


async def test_requests_per_group_from_comment_to_pick(flow: Flow) -> None:
    """The content-creating GitHub requests of a group of three that all succeed, and of
    its pick: the README's "What one run costs on GitHub" states them."""
    flow.plan(by_model={m: {"write": {f"{m}.txt": "x\n"}} for m in MODELS})
    flow.fake.requests.clear()
    await flow.comment(f"/agent --variants 3 --model {','.join(MODELS)} go")
    runs = [await flow.wait_for_run(k) for k in (1, 2, 3)]
    for run in runs:
        assert (await flow.settled(run.id)).state == "succeeded"
    await table_shows(flow, 3)
    await asyncio.sleep(0.5)  # nothing more is written once the table is complete
    ran = _content(flow)
    progress = ran.count("PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}") - 3
    flow.fake.requests.clear()
    await flow.comment("/agent pick 1")

    async def picked() -> bool:
        return "picked variant 1" in group_comment(flow).body

    await until(picked, what="the pick")
    await asyncio.sleep(0.5)
    pick = _content(flow)
    print(f"\nGitHub writes of a group of 3: {len(ran)} while running ({progress} progress), "
          f"{len(pick)} for the pick\n" + "\n".join(f"  {c}" for c in ran + pick))
    # Each variant: its check run created and completed, a tree, a commit and its branch;
    # the group's comment is created with the group and edited as variants end (once for
    # each at most: ends close together share an edit).
    edits = ran.count("PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}")
    assert 1 <= edits <= 3
    assert sorted(ran) == sorted(
        ["POST /repos/{owner}/{repo}/issues/{issue_number}/comments"]
        + ["POST /repos/{owner}/{repo}/check-runs", "POST /repos/{owner}/{repo}/git/trees",
           "POST /repos/{owner}/{repo}/git/commits", "POST /repos/{owner}/{repo}/git/refs"] * 3
        + ["PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}"] * edits
        + ["PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}"] * (3 + progress))
    # The pick: the PR and its review request, the two other branches deleted, one edit.
    assert sorted(pick) == sorted([
        "POST /repos/{owner}/{repo}/pulls",
        "POST /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
        "DELETE /repos/{owner}/{repo}/git/refs/{ref}",
        "DELETE /repos/{owner}/{repo}/git/refs/{ref}",
        "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}"])


def _content(flow: Flow) -> list[str]:
    return [r.operation for r in flow.fake.requests if r.method != "GET"
            and r.path.split("/")[1] != "app" and r.path != "/installation/token"
            and not r.path.endswith("/reactions")]


async def test_variants_on_a_pull_request_and_the_pick_moves_its_branch(flow: Flow) -> None:
    pull = flow.fake.add_pull(REPO, head_ref="feature", files={"feature.txt": b"work\n"},
                              title="Add the feature")
    head = pull.pull.head_sha
    flow.plan(by_model={"a": {"write": {"feature.txt": "a\n"}},
                        "b": {"write": {"feature.txt": "b\n"}}})
    await flow.comment("/agent --model a,b make it better", number=pull.number,
                       on_pull_request=True)
    runs = [await flow.settled((await flow.wait_for_run(k)).id) for k in (1, 2)]
    assert [r.state for r in runs] == ["succeeded", "succeeded"]
    # Neither touched the PR's branch: each is on its own, off the PR's head.
    assert flow.branches()["feature"] == head
    assert [r.branch for r in runs] == [f"agentbot/{pull.number}-add-the-feature-v{k}"
                                        for k in (1, 2)]
    assert all(flow.fake.repo(REPO).git.read_commit(r.commit_sha)["parents"] == [head]
               for r in runs)

    async def table() -> bool:
        comments = flow.status_comments(pull.number)
        return len(comments) == 1 and "2 of 2 finished" in comments[0].body

    await until(table, what="the table on the pull request")
    await flow.comment("/agent pick 2", number=pull.number, on_pull_request=True)

    async def moved() -> bool:
        return flow.branches().get("feature") == runs[1].commit_sha and set(
            flow.branches()) == {"main", "feature"}

    await until(moved, what="the PR's branch at variant 2 and the variant branches gone")
    assert flow.files("feature")["feature.txt"] == b"b\n"
    assert len(flow.pulls()) == 1  # no new pull request: as a single run on a PR

    async def recorded() -> bool:
        return "picked variant 2: its commit" in flow.status_comments(pull.number)[0].body

    await until(recorded, what="the pick in the comment")


async def test_a_profile_with_variants_makes_the_label_start_a_group(flow: Flow) -> None:
    flow.fake.push(REPO, {".github/agentbot.yml": (
        b"profiles:\n  trio:\n    variants: 3\n  many:\n    variants: 9\n")})
    flow.plan(write={"x.txt": "x\n"})
    await flow.deliver("issues", p.issues_labeled("agent:trio"))
    runs = [await flow.settled((await flow.wait_for_run(k)).id) for k in (1, 2, 3)]
    assert [(r.variant, r.state, r.trigger) for r in runs] == [
        (1, "succeeded", "label"), (2, "succeeded", "label"), (3, "succeeded", "label")]
    await table_shows(flow, 3)

    # The operator's limit caps a profile's variants (a command past it gets a reply).
    await flow.comment("/agent pick 1")

    async def picked() -> bool:
        return "picked variant 1" in group_comment(flow).body

    await until(picked, what="the pick")
    await flow.comment("/agent run --profile many go")
    more = [await flow.wait_for_run(k) for k in range(4, 9)]
    assert len({r.group_id for r in more}) == 1 and len(await flow.runs()) == 8


async def test_outsiders_get_no_variants_and_status_lists_groups(flow: Flow) -> None:
    flow.fake.add_collaborator(REPO, "visitor", "read")
    await flow.comment("/agent run --variants 2 go", login="visitor")

    async def refused() -> bool:
        return any("variants start only for someone with write access" in r
                   for r in flow.replies())

    await until(refused, what="the refusal")
    assert await flow.runs() == []

    flow.plan(by_model={"a": {"write": {"x.txt": "x\n"}}, "b": {"fail": True}})
    await flow.comment("/agent --model a,b go")
    runs = [await flow.settled((await flow.wait_for_run(k)).id) for k in (1, 2)]
    assert [r.state for r in runs] == ["succeeded", "failed"]
    await flow.comment("/agent pick")  # the one that succeeded

    async def picked() -> bool:
        comments = flow.status_comments()
        return len(comments) == 1 and "picked variant 1" in comments[0].body

    await until(picked, what="the pick of the one success")
    await flow.comment("/agent status")

    async def status() -> bool:
        return any("Runs of this issue" in r for r in flow.replies())

    await until(status, what="the status reply")
    [text] = [r for r in flow.replies() if "Runs of this issue" in r]
    group = runs[0].group_id
    assert f"| #{runs[0].id} (variant 1 of 2, group {group}) | succeeded |" in text
    assert f"| #{runs[1].id} (variant 2 of 2, group {group}) | failed |" in text
    [pull] = flow.pulls()
    assert (f"- Group {group}: 2 variants asked for by @octocat; 1 succeeded, 1 failed. "
            f"@octocat picked variant 1 (#{pull.number}).") in text


async def test_a_crash_while_variants_run_loses_none(flow: Flow) -> None:
    gates = gated(flow, {m: {"write": {f"{m}.txt": f"{m}\n"}} for m in MODELS})
    await flow.comment(f"/agent --variants 3 --model {','.join(MODELS)} go")
    runs = [await flow.wait_for_run(k) for k in (1, 2, 3)]
    gates["m-one"].write_text("")
    await flow.settled(runs[0].id)

    async def all_started() -> bool:
        return all(flow.agent_started(i) for i in range(3))

    await until(all_started, what="the other variants' agents")
    await flow.stop()  # two variants still run in their sandboxes
    gates["m-two"].write_text("")
    await flow.start()
    gates["m-three"].write_text("")
    done = [await flow.settled(run.id) for run in runs]
    assert [r.state for r in done] == ["succeeded"] * 3
    await table_shows(flow, 3)
    assert not flow.agent_started(3)  # the same sandboxes finished: none started again
    assert len(flow.check_runs()) == 3 and len(flow.status_comments()) == 1
    assert set(flow.branches()) == {"main", *(r.branch for r in done)}


async def test_a_pick_of_a_branch_pushed_to_since_is_refused_and_may_be_redone(
        flow: Flow) -> None:
    flow.plan(by_model={"a": {"write": {"x.txt": "a\n"}}, "b": {"write": {"x.txt": "b\n"}}})
    await flow.comment("/agent --model a,b go")
    runs = [await flow.settled((await flow.wait_for_run(k)).id) for k in (1, 2)]
    flow.fake.push(REPO, {"y.txt": b"someone else's\n"}, branch=runs[0].branch)
    await flow.comment("/agent pick 1")

    async def refused() -> bool:
        return "could not carry it out" in group_comment(flow).body

    await until(refused, what="the refused pick in the comment")
    assert "is no longer at the variant's commit" in group_comment(flow).body
    assert flow.pulls() == [] and set(flow.branches()) == {"main", runs[0].branch,
                                                           runs[1].branch}
    await flow.comment("/agent pick 2")  # a refused pick may be made again

    async def picked() -> bool:
        return "picked variant 2: draft pull request" in group_comment(flow).body

    await until(picked, what="the second pick")
    # The other branch moved: it is left alone, with its new commit.
    assert set(flow.branches()) == {"main", runs[0].branch, runs[1].branch}
    assert "y.txt" in flow.files(runs[0].branch)


async def test_the_retry_button_of_a_variant_runs_the_group_again(flow: Flow) -> None:
    flow.plan(fail=True)
    await flow.comment("/agent --model a,b go")
    runs = [await flow.settled((await flow.wait_for_run(k)).id) for k in (1, 2)]
    assert [r.state for r in runs] == ["failed", "failed"]
    [check] = [c for c in flow.check_runs() if c.external_id == str(runs[0].id)]
    assert [a["identifier"] for a in check.actions] == ["retry"]
    flow.plan(write={"x.txt": "x\n"})
    await flow.deliver("check_run", p.check_run_action(
        "retry", id=check.id, external_id=str(runs[0].id), head_sha=check.head_sha,
        name=check.name, status=check.status, conclusion=check.conclusion))
    again = [await flow.settled((await flow.wait_for_run(k)).id) for k in (3, 4)]
    assert [(r.variant, r.model, r.state) for r in again] == [
        (1, "a", "succeeded"), (2, "b", "succeeded")]
    [first, second] = await groups_of(flow)
    assert second.retry_of == first.id and again[0].group_id == second.id

    async def two_comments() -> bool:
        return len(flow.status_comments()) == 2 and "a retry of group" in flow.status_comments(
        )[1].body

    await until(two_comments, what="the retried group's own comment")
