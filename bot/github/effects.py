"""Exactly-once GitHub side effects: record before, complete after, look before redoing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.markdown import COMMENT_MAX_CHARS, clip
from bot.store.tables import github_effects, utcnow

log = logging.getLogger(__name__)

Create = Callable[[], Awaitable[dict[str, Any]]]
Find = Callable[[], Awaitable[dict[str, Any] | None]]


def marker(key: str) -> str:
    """An invisible tag put in comment bodies so a lost effect can be found again."""
    return f"<!-- agentbot:{key} -->"


def tagged(body: str, key: str) -> str:
    """A comment body ending in the marker of `key`, clipped so that the marker survives."""
    tag = marker(key)
    return clip(body, COMMENT_MAX_CHARS - len(tag) - 1) + "\n" + tag


async def find_marked_comment(gh: Any, url_vars: dict[str, Any], key: str
                              ) -> dict[str, Any] | None:
    """The id and link of the comment on an issue or PR whose body carries the marker of `key`."""
    tag = marker(key)
    async for comment in gh.getiter(
        "/repos/{owner}/{repo}/issues/{issue_number}/comments{?per_page}",
        {**url_vars, "per_page": 100},
    ):
        if tag in (comment.get("body") or ""):
            return {"id": comment["id"], "html_url": comment.get("html_url")}
    return None


async def once(db: AsyncEngine, key: str, create: Create, find: Find | None = None
               ) -> dict[str, Any]:
    """Make the effect named `key` at most once and return what it produced.

    A `pending` record means an earlier attempt may have reached GitHub and then died;
    `find` looks for its result there (a marker in a comment, an existing PR for a
    branch) before `create` is called again.
    """
    now = utcnow()
    raced = False
    async with db.begin() as conn:
        row = (await conn.execute(
            select(github_effects.c.status, github_effects.c.result)
            .where(github_effects.c.key == key)
        )).first()
        if row is None:
            try:
                async with conn.begin_nested():
                    await conn.execute(github_effects.insert().values(
                        key=key, status="pending", created_at=now, updated_at=now))
            except IntegrityError:
                raced = True  # someone else recorded it first: it may be on GitHub already
    if row is not None and row.status == "done":
        return dict(row.result or {})
    if (row is not None or raced) and find is not None:
        found = await find()
        if found is not None:
            log.info("effect %s found after an interrupted attempt", key)
            await _complete(db, key, found)
            return found
    result = await create()
    await _complete(db, key, result)
    return result


async def recorded(db: AsyncEngine, key: str) -> dict[str, Any] | None:
    """What a completed effect produced, or None when it was not (yet) made."""
    async with db.connect() as conn:
        row = (await conn.execute(
            select(github_effects.c.status, github_effects.c.result)
            .where(github_effects.c.key == key))).first()
    if row is None or row.status != "done":
        return None
    return dict(row.result or {})


async def _complete(db: AsyncEngine, key: str, result: dict[str, Any]) -> None:
    async with db.begin() as conn:
        await conn.execute(
            update(github_effects).where(github_effects.c.key == key)
            .values(status="done", result=result, updated_at=utcnow())
        )
