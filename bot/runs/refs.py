"""Where a run starts: its base commit and that commit's tree, resolved once and stored."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.tables import runs, utcnow
from bot.tasks import SingleFlight


async def resolve_base(db: AsyncEngine, gh: Any, run: Any) -> tuple[str, str]:
    """The run's base SHA and tree: the branch head, or the SHA the trigger fixed (a PR's head).

    One request, and none once both are stored; the check run, the sandbox and the
    commit all use the same commit, even when the branch moves in between.
    """
    if run.base_sha and run.base_tree:
        return str(run.base_sha), str(run.base_tree)
    # The reporter (for the check run) and the launcher (for the sandbox) both ask as soon
    # as a run is queued: within a process, the second waits for the first's answer.
    lock = _resolving.get(run.id)
    if lock is None:
        lock = _resolving[run.id] = asyncio.Lock()
    async with lock:
        async with db.connect() as conn:
            found = (await conn.execute(select(runs.c.base_sha, runs.c.base_tree)
                                        .where(runs.c.id == run.id))).one()
        if found.base_sha and found.base_tree:
            return str(found.base_sha), str(found.base_tree)
        return await _resolve(db, gh, run, found.base_sha)


_heads: SingleFlight[Any] = SingleFlight()
# A lock lives as long as someone waits on it or holds it.
_resolving: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()


async def _resolve(db: AsyncEngine, gh: Any, run: Any, sha: str | None) -> tuple[str, str]:
    owner, _, repo = run.repo_full_name.partition("/")
    where = {"owner": owner, "repo": repo}
    tree = None
    if sha is None:
        # Runs of one repository launched together ask for the same head: one request.
        branch = await _heads.run(
            (run.installation_id, run.repo_full_name, run.base_ref),
            lambda: gh.getitem("/repos/{owner}/{repo}/branches/{branch}",
                               {**where, "branch": run.base_ref}))
        sha, tree = str(branch["commit"]["sha"]), str(branch["commit"]["commit"]["tree"]["sha"])
        async with db.begin() as conn:
            # Only the first resolution sticks: a concurrent one may have seen a newer head.
            # The usual case is one statement: both go in while no SHA is stored.
            first = await conn.execute(update(runs).where(runs.c.id == run.id,
                                                          runs.c.base_sha.is_(None))
                                       .values(base_sha=sha, base_tree=tree,
                                               updated_at=utcnow()))
            if first.rowcount == 1:
                return sha, tree
            stored = (await conn.execute(select(runs.c.base_sha, runs.c.base_tree)
                                         .where(runs.c.id == run.id))).one()
        if stored.base_tree:  # another process stored both first (a replica, say)
            return str(stored.base_sha), str(stored.base_tree)
        sha, tree = str(stored.base_sha), None
    if tree is None:
        commit = await gh.getitem("/repos/{owner}/{repo}/git/commits/{commit_sha}",
                                  {**where, "commit_sha": sha})
        tree = str(commit["tree"]["sha"])
    async with db.begin() as conn:
        await conn.execute(update(runs).where(runs.c.id == run.id, runs.c.base_sha == sha)
                           .values(base_tree=tree))
    return str(sha), tree
