"""Agent sessions between runs over the internal API and both databases: stored redacted and
repacked, handed only to the follow-up run that was given them, refused when hostile, and
expired with the run's events (in the database or in the operator's directory)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runs import callbacks, sessions
from bot.runs.ledger import transition
from bot.store import sessions as stored
from bot.store.tables import RunState, run_sessions, runs, utcnow
from bot.web.retention import Retention
from sandbox.archive import Session, pack, unpack
from tests.runs.test_callbacks import KEY, RESULT_LIMIT, Hook, auth, queue_run, started_run

LIMIT = 256 * 1024
SID = "0b6f0c1e-8f0e-4d51-9b0a-5e5f3c1d2a11"
GH_TOKEN = "ghs_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # the shape only: no real token


def archive(agent: str = "claude", text: str = "") -> bytes:
    line = json.dumps({"type": "user", "message": {"content": f"first prompt ALPHA {text}"}})
    return pack(Session(agent, SID, {f"{SID}.jsonl": line.encode() + b"\n"}), LIMIT)


@pytest.fixture(params=["database", "directory"])
def session_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    return tmp_path / "sessions" if request.param == "directory" else None


@pytest.fixture
async def client(aiohttp_client: Any, engine: AsyncEngine,
                 session_dir: Path | None) -> AsyncIterator[TestClient]:
    app = web.Application()
    callbacks.add_routes(app, engine, KEY, Hook(), RESULT_LIMIT, session_limit=LIMIT,
                         session_dir=session_dir)
    yield await aiohttp_client(app)


async def finish(engine: AsyncEngine, run_id: int, **values: Any) -> None:
    assert await transition(engine, run_id, RunState.RUNNING, "sandbox reported")
    assert await transition(engine, run_id, RunState.FAILED, "it broke")
    if values:
        async with engine.begin() as conn:
            await conn.execute(update(runs).where(runs.c.id == run_id).values(**values))


async def follow_up(engine: AsyncEngine, earlier: int, **fields: Any) -> int:
    return await started_run(engine, config={"session": {"resume_from": earlier}}, **fields)


async def test_a_session_goes_from_one_run_to_its_follow_up_redacted(
        client: TestClient, engine: AsyncEngine, session_dir: Path | None) -> None:
    first = await started_run(engine)
    put = await client.put(f"/internal/runs/{first}/session", data=archive(text=GH_TOKEN),
                           headers=auth(first))
    assert put.status == 200, await put.text()
    # Stored where the operator said, never the sandbox's own bytes: redacted and repacked.
    async with engine.connect() as conn:
        row = (await conn.execute(select(run_sessions))).one()
    assert (row.run_id, row.agent, row.session_id) == (first, "claude", SID)
    assert (row.data is None) == (session_dir is not None)
    if session_dir is not None:
        [kept] = os.listdir(session_dir)
        assert os.stat(session_dir / kept).st_mode & 0o777 == 0o600
    await finish(engine, first)

    second = await follow_up(engine, first)
    got = await client.get(f"/internal/runs/{second}/session", headers=auth(second))
    assert got.status == 200 and got.content_type == "application/gzip"
    body = await got.read()
    assert hashlib.sha256(body).hexdigest() == row.sha256
    session = unpack(body, LIMIT)
    text = session.files[f"{SID}.jsonl"].decode()
    assert "first prompt ALPHA" in text
    assert GH_TOKEN not in text and "[REDACTED:github_token]" in text


async def test_only_the_follow_up_given_the_session_gets_it(
        client: TestClient, engine: AsyncEngine) -> None:
    first = await started_run(engine, number=1)
    assert (await client.put(f"/internal/runs/{first}/session", data=archive(),
                             headers=auth(first))).status == 200
    await finish(engine, first)

    # Another run with no resume_from, another run's token, a run of another repository that
    # names it, a run of another agent, and the follow-up once it has ended: none get it.
    other = await started_run(engine, number=2)
    assert (await client.get(f"/internal/runs/{other}/session", headers=auth(other))
            ).status == 404
    second = await follow_up(engine, first, number=1)
    assert (await client.get(f"/internal/runs/{second}/session", headers=auth(other))
            ).status == 401
    foreign = await follow_up(engine, first, number=3, repo_id=999)
    assert (await client.get(f"/internal/runs/{foreign}/session", headers=auth(foreign))
            ).status == 404
    elsewhere = await follow_up(engine, first, number=11)  # another issue of the repository
    assert (await client.get(f"/internal/runs/{elsewhere}/session", headers=auth(elsewhere))
            ).status == 404
    await finish(engine, elsewhere)
    codex = await follow_up(engine, first, number=4, agent="codex")
    assert (await client.get(f"/internal/runs/{codex}/session", headers=auth(codex))
            ).status == 404
    assert (await client.get(f"/internal/runs/{second}/session", headers=auth(second))
            ).status == 200
    await finish(engine, second)
    assert (await client.get(f"/internal/runs/{second}/session", headers=auth(second))
            ).status == 409


@pytest.mark.parametrize(("body", "status", "says"), [
    (b"\x1f\x8b not really gzip", 400, "session refused: the archive is not gzip data"),
    (archive(agent="codex"), 400, "not the run's agent's"),
    (pack(Session("claude", SID, {"x.jsonl": b"\xff\xfe binary"}), LIMIT), 400,
     "is not UTF-8 text"),
    (b"x" * (LIMIT + 1), 413, f"body over {LIMIT} bytes"),
], ids=["not-gzip", "other-agent", "not-text", "too-large"])
async def test_a_refused_session_is_not_stored(client: TestClient, engine: AsyncEngine,
                                                body: bytes, status: int, says: str) -> None:
    run_id = await started_run(engine)
    response = await client.put(f"/internal/runs/{run_id}/session", data=body,
                                headers=auth(run_id))
    assert response.status == status
    assert says in (await response.json())["message"]
    assert await stored.describe(engine, run_id) is None


async def test_a_session_is_taken_only_while_the_run_is_active(
        client: TestClient, engine: AsyncEngine) -> None:
    queued = await queue_run(engine, number=5)
    done = await started_run(engine, number=6)
    await finish(engine, done)
    for run_id in (queued, done):
        response = await client.put(f"/internal/runs/{run_id}/session", data=archive(),
                                    headers=auth(run_id))
        assert response.status == 409


async def test_retention_expires_a_session_and_the_follow_up_says_why(
        client: TestClient, engine: AsyncEngine, session_dir: Path | None) -> None:
    first = await started_run(engine, number=7)
    assert (await client.put(f"/internal/runs/{first}/session", data=archive(),
                             headers=auth(first))).status == 200
    recent = await started_run(engine, number=8)
    assert (await client.put(f"/internal/runs/{recent}/session", data=archive(),
                             headers=auth(recent))).status == 200
    await finish(engine, first, finished_at=utcnow() - dt.timedelta(days=31))
    await finish(engine, recent)

    cutoff = utcnow() - dt.timedelta(days=30)
    assert await stored.expire(engine, cutoff, session_dir) == 1
    assert await stored.expire(engine, cutoff, session_dir) == 0  # twice is harmless
    assert (await stored.describe(engine, first)).expired  # type: ignore[union-attr]
    assert await stored.load(engine, first, session_dir) is None
    assert await stored.load(engine, recent, session_dir) is not None
    if session_dir is not None:
        assert os.listdir(session_dir) == [f"run-{recent}.session.tar.gz"]

    choice = await sessions.choose(engine, repo_id=100, number=7, is_pull_request=False,
                                   agent="claude", fresh=False, max_bytes=LIMIT)
    assert choice == {"fresh": f"the session of run #{first} expired"}
    second = await follow_up(engine, first, number=7)
    got = await client.get(f"/internal/runs/{second}/session", headers=auth(second))
    assert got.status == 404 and "expired" in (await got.json())["message"]


async def test_an_altered_session_file_is_not_handed_on(
        engine: AsyncEngine, tmp_path: Path) -> None:
    run_id = await queue_run(engine, number=9)
    await stored.store(engine, run_id, "claude", SID, archive(), tmp_path)
    assert await stored.load(engine, run_id, tmp_path) == archive()
    (tmp_path / f"run-{run_id}.session.tar.gz").write_bytes(archive(text="planted"))
    assert await stored.load(engine, run_id, tmp_path) is None


async def test_which_earlier_run_a_follow_up_resumes(engine: AsyncEngine) -> None:
    async def choose(number: int, is_pull_request: bool, agent: str = "claude",
                     fresh: bool = False, max_bytes: int = LIMIT) -> dict[str, Any] | None:
        return await sessions.choose(engine, repo_id=100, number=number,
                                     is_pull_request=is_pull_request, agent=agent,
                                     fresh=fresh, max_bytes=max_bytes)

    assert await choose(20, False) is None  # a first run: nothing to resume, nothing to say
    # Issue #20's run opened PR #21 and kept a session.
    issue_run = await started_run(engine, number=20)
    await stored.store(engine, issue_run, "claude", SID, archive())
    await finish(engine, issue_run, pr_number=21)
    assert await choose(21, True) == {"resume_from": issue_run}
    assert await choose(21, True, fresh=True) == {"fresh": "`--fresh` asked for one"}
    assert await choose(21, True, agent="command") == {
        "fresh": "command cannot continue a session"}
    assert await choose(21, True, agent="codex") == {"fresh": f"run #{issue_run} was claude's"}
    assert await choose(21, True, max_bytes=0) == {"fresh": "the operator keeps no sessions"}
    # Its issue goes on in the PR: a new run on the issue starts fresh, saying nothing.
    assert await choose(20, False) is None
    # A run on the PR itself is now its latest, and left no session.
    pr_run = await started_run(engine, number=21, is_pull_request=True)
    await finish(engine, pr_run)
    assert await choose(21, True) == {"fresh": f"run #{pr_run} left no session"}
    # The same numbers in another repository are another PR.
    assert await sessions.choose(engine, repo_id=555, number=21, is_pull_request=True,
                                 agent="claude", fresh=False, max_bytes=LIMIT) is None
    # A failed issue run (no PR) is resumed by a follow-up on the issue.
    failed = await started_run(engine, number=30, agent="aider")
    await finish(engine, failed)
    assert await choose(30, False) == {"fresh": f"run #{failed} was aider's"}


async def test_the_hourly_retention_pass_expires_sessions_with_events(
        engine: AsyncEngine, tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    old = await started_run(engine, number=40)
    await stored.store(engine, old, "claude", SID, archive(), directory)
    await finish(engine, old, finished_at=utcnow() - dt.timedelta(days=3))
    retention = Retention(engine, 2 * 86400, session_dir=directory)
    await retention.delete_expired()
    assert retention.sessions_expired == 1
    assert (await stored.describe(engine, old)).expired  # type: ignore[union-attr]
    assert os.listdir(directory) == []
