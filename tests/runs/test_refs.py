"""A run's base commit and tree: resolved once, even when two parts ask at the same time."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.github.client import GitHubApp
from bot.runs.ledger import get_run
from bot.runs.refs import resolve_base
from tests.fakes.github import FakeGitHub
from tests.runs.test_callbacks import queue_run

REPO = "octo-org/demo"


async def test_concurrent_resolutions_make_one_request_and_agree(
        engine: AsyncEngine, fake_github: FakeGitHub, github_app: GitHubApp) -> None:
    fake_github.add_installation(7, "octo-org")
    fake_github.add_repo("octo-org", "demo", repo_id=100)
    head = fake_github.repo(REPO).git.refs["refs/heads/main"]
    tree = fake_github.repo(REPO).git.read_commit(head)["tree"]
    run = await get_run(engine, await queue_run(engine))
    gh = github_app.installation(7)
    first, second = await asyncio.gather(resolve_base(engine, gh, run),
                                         resolve_base(engine, gh, run))
    assert first == second == (head, tree)
    assert len(fake_github.calls("GET /repos/{owner}/{repo}/branches/{branch}")) == 1
    # Stored: the branch moving later does not move the run, and nothing is asked again.
    fake_github.push(REPO, {"new.txt": b"new\n"})
    stored = await get_run(engine, run.id)
    assert await resolve_base(engine, gh, stored) == (head, tree)
    assert len(fake_github.calls("GET /repos/{owner}/{repo}/branches/{branch}")) == 1


async def test_a_fixed_sha_only_needs_its_tree(
        engine: AsyncEngine, fake_github: FakeGitHub, github_app: GitHubApp) -> None:
    fake_github.add_installation(7, "octo-org")
    fake_github.add_repo("octo-org", "demo", repo_id=100)
    old = fake_github.repo(REPO).git.refs["refs/heads/main"]
    fake_github.push(REPO, {"new.txt": b"new\n"})
    run = await get_run(engine, await queue_run(engine, base_sha=old))
    sha, tree = await resolve_base(engine, github_app.installation(7), run)
    assert (sha, tree) == (old, fake_github.repo(REPO).git.read_commit(old)["tree"])
    assert fake_github.calls("GET /repos/{owner}/{repo}/branches/{branch}") == []


async def test_a_head_stored_meanwhile_by_another_replica_wins(
        engine: AsyncEngine, fake_github: FakeGitHub, github_app: GitHubApp) -> None:
    """Two replicas resolving one run: the first to store its head and tree wins, and the
    other takes both from the database (no request for the tree)."""
    from sqlalchemy import update

    from bot.store.tables import runs

    fake_github.add_installation(7, "octo-org")
    fake_github.add_repo("octo-org", "demo", repo_id=100)
    earlier = fake_github.repo(REPO).git.refs["refs/heads/main"]
    earlier_tree = fake_github.repo(REPO).git.read_commit(earlier)["tree"]
    fake_github.push(REPO, {"new.txt": b"new\n"})
    run = await get_run(engine, await queue_run(engine))
    gh = github_app.installation(7)
    asked = gh.getitem

    async def getitem(url: str, params: dict[str, str] | None = None, **kw: object) -> object:
        answer = await asked(url, params, **kw)
        if "branches" in url:  # the other replica stored the head it saw, before this one
            async with engine.begin() as conn:
                await conn.execute(update(runs).where(runs.c.id == run.id).values(
                    base_sha=earlier, base_tree=earlier_tree))
        return answer

    gh.getitem = getitem  # type: ignore[method-assign]
    assert await resolve_base(engine, gh, run) == (earlier, earlier_tree)
    assert fake_github.calls("GET /repos/{owner}/{repo}/git/commits/{commit_sha}") == []
    stored = await get_run(engine, run.id)
    assert (stored.base_sha, stored.base_tree) == (earlier, earlier_tree)
