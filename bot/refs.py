"""Where a run starts: its base commit and that commit's tree, resolved once and stored."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store import runs, utcnow


async def resolve_base(db: AsyncEngine, gh: Any, run: Any) -> tuple[str, str]:
    """The run's base SHA and tree: the branch head, or the SHA the trigger fixed (a PR's head).

    One request, and none once both are stored; the check run, the sandbox and the
    commit all use the same commit, even when the branch moves in between.
    """
    if run.base_sha and run.base_tree:
        return str(run.base_sha), str(run.base_tree)
    owner, _, repo = run.repo_full_name.partition("/")
    if run.base_sha:
        commit = await gh.getitem("/repos/{owner}/{repo}/git/commits/{commit_sha}",
                                  {"owner": owner, "repo": repo, "commit_sha": run.base_sha})
        sha, tree = str(run.base_sha), str(commit["tree"]["sha"])
    else:
        branch = await gh.getitem("/repos/{owner}/{repo}/branches/{branch}",
                                  {"owner": owner, "repo": repo, "branch": run.base_ref})
        sha = str(branch["commit"]["sha"])
        tree = str(branch["commit"]["commit"]["tree"]["sha"])
    async with db.begin() as conn:
        # Only the first resolution sticks: a concurrent one may have seen a newer head.
        await conn.execute(update(runs).where(runs.c.id == run.id, runs.c.base_sha.is_(None))
                           .values(base_sha=sha, updated_at=utcnow()))
        await conn.execute(update(runs).where(runs.c.id == run.id, runs.c.base_sha == sha,
                                              runs.c.base_tree.is_(None))
                           .values(base_tree=tree))
        stored = (await conn.execute(runs.select().with_only_columns(
            runs.c.base_sha, runs.c.base_tree).where(runs.c.id == run.id))).one()
    if stored.base_sha != sha:  # lost the race to another resolution: use the stored one
        return await resolve_base(db, gh, _Pinned(run, stored.base_sha))
    return sha, tree


class _Pinned:
    """A run row with its base SHA replaced (rows are immutable)."""

    def __init__(self, run: Any, base_sha: str) -> None:
        self._run, self.base_sha, self.base_tree = run, base_sha, None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)
