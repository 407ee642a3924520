"""The redelivery reconciler: deliveries GitHub failed to bring us, asked for again."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import gidgethub
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.github.client import RateLimited
from bot.loops import STUCK_AFTER, Ticker
from bot.runs import leases
from bot.store.tables import aware, deliveries, redeliveries, utcnow

log = logging.getLogger(__name__)

LEASE = "redeliver"
LIST_URL = "/app/hook/deliveries?per_page=100"
ATTEMPTS_URL = "/app/hook/deliveries/{delivery_id}/attempts"
# The bot's own refusals of a body (malformed, too large): the same bytes get the same answer.
REFUSED_FOR_GOOD = frozenset({400, 413, 422})
_CHUNK = 500  # GUIDs per inbox query, well within every database's parameter limit


@dataclass(frozen=True)
class RedeliverOptions:
    """How far back, how fast and how often the reconciler asks (docs/architecture.md)."""

    interval: float = 300.0  # between passes; the first is at start-up
    window: dt.timedelta = dt.timedelta(days=3)  # GitHub redelivers nothing older
    per_pass: int = 50  # the most redeliveries asked for in one pass; the rest wait a pass
    per_second: float = 2.0  # GitHub's secondary limits: stay far below them
    max_tries: int = 3  # asks per GUID; after the last one fails, it is given up
    retry_after: dt.timedelta = dt.timedelta(minutes=10)  # GitHub's attempt shows up by then
    max_pages: int = 50  # of 100 deliveries each: what one pass lists at most


@dataclass
class _Seen:
    """Every attempt GitHub listed for one GUID, folded into what the pass needs."""

    guid: str
    event: str
    action: str | None
    first_at: dt.datetime
    succeeded: bool = False
    failed_id: int | None = None  # GitHub's id of the newest failed attempt
    failed_status: int = 0


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ok(item: dict[str, Any]) -> bool:
    code = item.get("status_code")
    return isinstance(code, int) and 200 <= code < 300


class Redeliverer:
    """One replica at a time (a loop lease) lists the App's recent deliveries and asks GitHub
    to send again each one that failed, is not in the inbox and was not asked for lately."""

    def __init__(self, db: AsyncEngine, app_client: Callable[[], Any],
                 options: RedeliverOptions | None = None, *,
                 on_outcome: Callable[[str], None] = lambda outcome: None,
                 clock: Callable[[], dt.datetime] = utcnow,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.options = options or RedeliverOptions()
        self._db, self._app_client = db, app_client
        self._on_outcome, self._clock, self._sleep = on_outcome, clock, sleep
        self.owner = leases.new_owner(LEASE)
        # A pass is due every interval and takes up to per_pass / per_second seconds.
        longest = self.options.interval + self.options.per_pass / self.options.per_second
        self.ticker = Ticker("redelivery reconciler", self._tick, self.options.interval,
                             stuck_after=STUCK_AFTER + dt.timedelta(seconds=longest))

    def start(self) -> None:
        self.ticker.start()

    async def close(self) -> None:
        await self.ticker.close()
        with contextlib.suppress(Exception):  # a lease left behind only expires later
            await asyncio.shield(leases.release_loop(self._db, LEASE, self.owner))

    def health(self) -> str | None:
        return self.ticker.health()

    async def _tick(self) -> None:
        await self.reconcile()

    async def reconcile(self) -> int:
        """One pass; returns how many redeliveries GitHub accepted."""
        options = self.options
        # Held from pass to pass, so the other replicas neither list nor ask meanwhile; a
        # holder that dies hands it over once it runs out.
        hold = options.interval + options.per_pass / options.per_second + 60
        if not await leases.acquire_loop(self._db, LEASE, self.owner, hold):
            return 0
        now = self._clock()
        try:
            seen = await self._list(now - options.window)
        except (gidgethub.GitHubException, aiohttp.ClientError, TimeoutError, ValueError,
                KeyError, TypeError) as exc:
            log.warning("redelivery: could not list the App's deliveries (%s); trying again "
                        "in %.0f s", _describe(exc), options.interval)
            return 0
        await self._forget(now - options.window - dt.timedelta(days=1))
        failed = [s for s in seen.values() if not s.succeeded and s.failed_id is not None
                  and s.failed_status not in REFUSED_FOR_GOOD]
        if not failed:
            return 0
        stored = await self._in_inbox(s.guid for s in failed)
        asked = await self._asked([s.guid for s in failed if s.guid not in stored])
        wanted = []
        oldest_first = sorted(failed, key=lambda s: (s.first_at, s.failed_id or 0))
        for seen_one in oldest_first:
            if seen_one.guid in stored:
                continue
            row = asked.get(seen_one.guid)
            if row is not None and (row.gave_up_at is not None
                                    or now - aware(row.asked_at) < options.retry_after):
                continue
            if row is not None and row.tries >= options.max_tries:
                await self._give_up(seen_one, row.tries, now)
                continue
            wanted.append((seen_one, row.tries if row is not None else 0))
        return await self._ask(wanted, now)

    async def _list(self, since: dt.datetime) -> dict[str, _Seen]:
        """Attempts within the window, newest first as GitHub lists them, folded per GUID."""
        seen: dict[str, _Seen] = {}
        limit = self.options.max_pages * 100
        client = self._app_client()
        async with contextlib.aclosing(client.getiter(LIST_URL)) as items:
            count = 0
            async for item in items:
                at = _when(item["delivered_at"])
                if at < since:
                    break  # GitHub lists newest first: the rest are older still
                count += 1
                if count > limit:
                    log.warning("redelivery: more than %d deliveries in the window; the older "
                                "ones are not looked at", limit)
                    break
                guid = item["guid"]
                one = seen.get(guid)
                if one is None:
                    one = seen[guid] = _Seen(guid, str(item.get("event") or ""),
                                             item.get("action"), at)
                one.first_at = min(one.first_at, at)
                if _ok(item):
                    one.succeeded = True
                elif one.failed_id is None:
                    one.failed_id = int(item["id"])
                    one.failed_status = int(item.get("status_code") or 0)
        return seen

    async def _in_inbox(self, guids: Iterable[str]) -> set[str]:
        wanted = list(guids)
        found: set[str] = set()
        async with self._db.connect() as conn:
            for start in range(0, len(wanted), _CHUNK):
                rows = await conn.execute(select(deliveries.c.delivery_id).where(
                    deliveries.c.delivery_id.in_(wanted[start:start + _CHUNK])))
                found.update(rows.scalars())
        return found

    async def _asked(self, guids: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        async with self._db.connect() as conn:
            for start in range(0, len(guids), _CHUNK):
                rows = await conn.execute(select(redeliveries).where(
                    redeliveries.c.guid.in_(guids[start:start + _CHUNK])))
                found.update((row.guid, row) for row in rows)
        return found

    async def _ask(self, wanted: list[tuple[_Seen, int]], now: dt.datetime) -> int:
        options, client, accepted = self.options, self._app_client(), 0
        if len(wanted) > options.per_pass:
            log.info("redelivery: %d failed deliveries to ask for; %d now, the rest next pass",
                     len(wanted), options.per_pass)
        for index, (seen, tries) in enumerate(wanted[:options.per_pass]):
            if index:
                await self._sleep(1 / options.per_second)
            assert seen.failed_id is not None
            # Recorded first: a crash right after the request costs a try, never a second
            # request at once (and a second one would be harmless: the inbox keeps one per GUID).
            await self._record(seen, tries + 1, now)
            what = (f"delivery {seen.guid} ({seen.event}"
                    f"{'.' + seen.action if seen.action else ''}, GitHub's attempt "
                    f"{seen.failed_id} answered {seen.failed_status or 'nothing'})")
            try:
                await client.post(ATTEMPTS_URL, {"delivery_id": seen.failed_id}, data=b"")
            except RateLimited as exc:
                self._on_outcome("refused")
                log.warning("redelivery: GitHub's rate limit stops the pass at %s; the rest "
                            "in %.0f s (%s)", what, options.interval, _describe(exc))
                break
            except (gidgethub.GitHubException, aiohttp.ClientError, TimeoutError) as exc:
                self._on_outcome("refused")
                log.warning("redelivery: GitHub refused to send %s again (try %d of %d; %s)",
                            what, tries + 1, options.max_tries, _describe(exc))
                continue
            accepted += 1
            self._on_outcome("requested")
            log.info("redelivery: asked GitHub to send %s again (try %d of %d)", what,
                     tries + 1, options.max_tries)
        return accepted

    async def _record(self, seen: _Seen, tries: int, now: dt.datetime) -> None:
        assert seen.failed_id is not None
        values = {"event": seen.event[:64], "hook_delivery_id": seen.failed_id,
                  "tries": tries, "asked_at": now}
        async with self._db.begin() as conn:
            if tries == 1:
                await conn.execute(insert(redeliveries).values(guid=seen.guid, **values))
            else:
                await conn.execute(update(redeliveries)
                                   .where(redeliveries.c.guid == seen.guid).values(**values))

    async def _give_up(self, seen: _Seen, tries: int, now: dt.datetime) -> None:
        async with self._db.begin() as conn:
            await conn.execute(update(redeliveries).where(redeliveries.c.guid == seen.guid)
                               .values(gave_up_at=now))
        self._on_outcome("gave_up")
        log.warning("redelivery: gave up on delivery %s (%s) after %d tries; its last attempt "
                    "answered %s", seen.guid, seen.event, tries, seen.failed_status or "nothing")

    async def _forget(self, before: dt.datetime) -> None:
        """Drop the records of GUIDs GitHub no longer redelivers anyway."""
        async with self._db.begin() as conn:
            await conn.execute(delete(redeliveries).where(redeliveries.c.asked_at < before))


def _describe(exc: BaseException) -> str:
    """A short reason for a log line: the status and GitHub's message, never a header."""
    if isinstance(exc, gidgethub.HTTPException):
        return f"{int(exc.status_code)} {str(exc)[:200]}"
    return type(exc).__name__
