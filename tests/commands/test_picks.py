"""`/agent pick` as its handler records it: once per request, even when dispatch redoes it."""

from __future__ import annotations

from sqlalchemy import select, update

from bot.runs.groups import PICK_PENDING
from bot.store.tables import DeliveryStatus, deliveries, run_groups, runs, utcnow
from tests.commands.test_triggers import REPO, Harness, harness
from tests.fakes import payloads as p

__all__ = ["harness"]


async def finished_group(harness: Harness) -> list[int]:
    """A group of two whose variants both succeeded with a commit (no scheduler runs here)."""
    await harness.deliver("issue_comment", harness.comment("/agent --model a,b go"))
    ids = [run.id for run in await harness.runs()]
    assert len(ids) == 2
    async with harness.bot.engine.begin() as conn:  # type: ignore[union-attr]
        for k, run_id in enumerate(ids, start=1):
            await conn.execute(update(runs).where(runs.c.id == run_id).values(
                state="succeeded", commit_sha=f"{k}" * 40, branch=f"agentbot/42-x-v{k}",
                finished_at=utcnow()))
    return ids


async def group_row(harness: Harness) -> object:
    async with harness.bot.engine.connect() as conn:  # type: ignore[union-attr]
        return (await conn.execute(select(run_groups))).one()


async def test_a_redone_pick_is_recorded_once_and_answered_never(harness: Harness) -> None:
    await finished_group(harness)
    replies = len(harness.comments(p.ISSUE_NUMBER))
    delivery = await harness.deliver("issue_comment", harness.comment("/agent pick 2"))
    group = await group_row(harness)
    assert (group.picked_variant, group.picked_by, group.pick_state) == (2, "octocat",
                                                                         PICK_PENDING)
    # Dispatch dies after the handler ran and before the delivery was marked done: it runs
    # the handler again, which must neither reply "already picked" nor pick again.
    async with harness.bot.engine.begin() as conn:  # type: ignore[union-attr]
        await conn.execute(update(deliveries).where(deliveries.c.delivery_id == delivery)
                           .values(status=DeliveryStatus.PENDING, done_handlers=[],
                                   next_attempt_at=utcnow()))
    assert harness.bot.inbox is not None
    while await harness.bot.inbox.drain_once():
        pass
    assert len(harness.comments(p.ISSUE_NUMBER)) == replies
    assert (await group_row(harness)).picked_at == group.picked_at

    # Another writer's pick meanwhile is told whose came first.
    await harness.deliver("issue_comment", harness.comment("/agent pick 1"))
    assert "@octocat picked variant 2 of group" in harness.comments(p.ISSUE_NUMBER)[-1]
    assert (await group_row(harness)).picked_variant == 2


async def test_pick_is_refused_to_readers_and_while_variants_run(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent --variants 2 go"))
    await harness.deliver("issue_comment", harness.comment("/agent pick 1"))
    assert "variants 1, 2 are still running" in harness.comments(p.ISSUE_NUMBER)[-1]
    await harness.deliver("issue_comment", harness.comment("/agent pick 1", login="reader"))
    assert "only people with write access" in harness.comments(p.ISSUE_NUMBER)[-1]
    assert (await group_row(harness)).pick_state is None


async def test_four_variants_over_two_agents_are_two_of_each(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment(
        "/agent --variants 4 --agent claude,codex --model opus go"))
    made = await harness.runs()
    assert [(r.variant, r.agent, r.model) for r in made] == [
        (1, "claude", "opus"), (2, "codex", "opus"), (3, "claude", "opus"),
        (4, "codex", "opus")]
    assert len({r.group_id for r in made}) == 1
    assert {r.delivery_id.rsplit(":", 1)[1] for r in made} == {"v1", "v2", "v3", "v4"}


async def test_a_profiles_variants_on_an_outsiders_issue_are_refused(harness: Harness) -> None:
    harness.fake.push(REPO, {".github/agentbot.yml": b"profiles:\n  trio:\n    variants: 3\n"})
    data = p.issues_labeled("agent:trio", number=p.ISSUE_NUMBER)
    data["issue"]["user"] = p.user("stranger")
    await harness.deliver("issues", data)
    assert await harness.runs() == []
    [reply] = harness.comments(p.ISSUE_NUMBER)
    assert "variants start only for someone with write access" in reply
