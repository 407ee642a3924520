"""Agent sessions between runs: which earlier run a new one may resume, and the check, the
redaction and the repacking of the archive a sandbox hands back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import desc, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.redact import redact
from bot.store import sessions as stored
from bot.store.tables import runs
from sandbox.agents import ADAPTERS
from sandbox.archive import ArchiveError, Session, pack, unpack

# The agents whose pinned CLI continues a session headless.
RESUMABLE_AGENTS = tuple(name for name, adapter in ADAPTERS.items() if adapter.resumable)

# Why a follow-up starts fresh (its check run says so: bot.report.text).
WHY_ASKED = "`--fresh` asked for one"
WHY_OFF = "the operator keeps no sessions"
WHY_AGENT = "{agent} cannot continue a session"
WHY_OTHER_AGENT = "run #{run_id} was {agent}'s"
WHY_NONE = "run #{run_id} left no session"
WHY_EXPIRED = "the session of run #{run_id} expired"


def session_choice(resume_from: int | None = None, fresh: str | None = None) -> dict[str, Any]:
    """What a run's config records of its session: the run it resumes, or why it does not."""
    return {"resume_from": resume_from} if resume_from else {"fresh": fresh}


async def latest_run(engine: AsyncEngine, repo_id: int, number: int,
                     is_pull_request: bool) -> Any | None:
    """The run a follow-up on this issue or pull request continues: on a pull request, the
    latest run on it or the run that opened it; on an issue, its latest run when that one
    opened no pull request (a failed run, say: its pull request is where work goes on)."""
    where = [runs.c.repo_id == repo_id]
    if is_pull_request:
        where.append(or_(runs.c.number == number, runs.c.pr_number == number))
    else:
        where.append(runs.c.number == number)
    async with engine.connect() as conn:
        latest = (await conn.execute(select(runs).where(*where).order_by(desc(runs.c.id))
                                     .limit(1))).first()
    if latest is None or (not is_pull_request and latest.pr_number):
        return None
    return latest


async def choose(engine: AsyncEngine, *, repo_id: int, number: int, is_pull_request: bool,
                 agent: str, fresh: bool, max_bytes: int) -> dict[str, Any] | None:
    """The session choice of a new run (session_choice), or None for a first run, which
    has nothing to resume and nothing to say about it."""
    earlier = await latest_run(engine, repo_id, number, is_pull_request)
    if earlier is None:
        return None
    if fresh:
        return session_choice(fresh=WHY_ASKED)
    if not max_bytes:
        return session_choice(fresh=WHY_OFF)
    if agent not in RESUMABLE_AGENTS:
        return session_choice(fresh=WHY_AGENT.format(agent=agent))
    if earlier.agent != agent:
        return session_choice(fresh=WHY_OTHER_AGENT.format(run_id=earlier.id,
                                                           agent=earlier.agent))
    found = await stored.describe(engine, int(earlier.id))
    if found is None:
        return session_choice(fresh=WHY_NONE.format(run_id=earlier.id))
    if found.expired:
        return session_choice(fresh=WHY_EXPIRED.format(run_id=earlier.id))
    return session_choice(resume_from=int(earlier.id))


def checked_archive(data: bytes, agent: str, max_bytes: int) -> Session:
    """The session in a sandbox's archive, checked (caps, paths, no links; the run's agent),
    every file redacted as all output is, and packed again by us: what is stored is never
    the sandbox's own bytes. ArchiveError says what was refused."""
    session = unpack(data, max_bytes)
    if session.agent != agent:
        raise ArchiveError(f"the archive is {session.agent[:40]!r}'s, not the run's agent's")
    files: dict[str, bytes] = {}
    for name, content in session.files.items():
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            raise ArchiveError(f"the session's file {name[:80]!r} is not UTF-8 text") from None
        files[name] = redact(text).encode("utf-8")
    return Session(agent, session.session_id, files)


def repack(session: Session, max_bytes: int) -> bytes:
    """The checked session as the archive the next run gets."""
    return pack(session, max_bytes)
