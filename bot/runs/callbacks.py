"""Internal API: events, the agent session and the result that sandboxes upload (and the
earlier session a run resumes), authenticated per run."""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runs.ledger import transition
from bot.runs.sessions import checked_archive, repack
from bot.store import sessions as stored_sessions
from bot.store.tables import FINAL_STATES, RunState, run_events, runs, utcnow
from sandbox.archive import ArchiveError

log = logging.getLogger(__name__)

MAX_EVENTS_BYTES = 1024 * 1024
MAX_EVENT_DATA_BYTES = 64 * 1024


def callback_key(private_key_pem: str) -> bytes:
    """The server key run tokens derive from; every replica holding the App key agrees."""
    return hashlib.sha256(b"agentbot callback key\0" + private_key_pem.encode()).digest()


def run_token(key: bytes, run_id: int) -> str:
    """The bearer token of one run: useless for any other run."""
    return hmac.new(key, f"run:{run_id}".encode(), hashlib.sha256).hexdigest()


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq: int = Field(ge=0, le=2**31 - 1)
    ts: float | str
    kind: Literal["phase", "log", "todo", "tool", "message"]
    data: dict[str, Any]


EventsBody = TypeAdapter(Event | list[Event])


class AddedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Annotated[str, Field(min_length=1, max_length=4096)]
    mode: Literal["100644", "100755", "120000"]
    content_b64: str

    @field_validator("content_b64")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64") from None
        return value


class DeletedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Annotated[str, Field(min_length=1, max_length=4096)]
    deleted: Literal[True]


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["succeeded", "failed", "no_changes"]
    summary: str = Field(default="", max_length=65_536)
    commit_message: str = Field(default="", max_length=65_536)
    changes: list[AddedFile | DeletedFile] = Field(default_factory=list)
    stats: dict[str, Any] = Field(default_factory=dict)


ResultHook = Callable[[int, Result], Awaitable[None]]

ENGINE_KEY: web.AppKey[Callable[[], AsyncEngine]] = web.AppKey("callbacks_engine")
TOKEN_KEY_KEY: web.AppKey[bytes] = web.AppKey("callbacks_key", bytes)
RESULT_HOOK_KEY: web.AppKey[ResultHook] = web.AppKey("callbacks_result_hook")
RESULT_LIMIT_KEY: web.AppKey[int] = web.AppKey("callbacks_result_limit", int)
SESSION_LIMIT_KEY: web.AppKey[int] = web.AppKey("callbacks_session_limit", int)
SESSION_DIR_KEY: web.AppKey[Path | None] = web.AppKey("callbacks_session_dir")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


async def _authorised_run(request: web.Request) -> tuple[int, Any] | web.Response:
    try:
        run_id = int(request.match_info["run_id"])
    except ValueError:
        return _error(404, "no such run")
    if not 0 < run_id < 2**63:  # no run has such an id, and the database could not say so
        return _error(404, "no such run")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = run_token(request.app[TOKEN_KEY_KEY], run_id)
    # A header byte past ASCII arrives as a character no token has; compare bytes only.
    if (scheme.lower() != "bearer" or not token.isascii()
            or not hmac.compare_digest(token.encode(), expected.encode())):
        return _error(401, "missing or wrong run token")
    async with request.app[ENGINE_KEY]().connect() as conn:
        run = (await conn.execute(select(runs.c.id, runs.c.state, runs.c.result)
                                  .where(runs.c.id == run_id))).first()
    if run is None:
        return _error(404, "no such run")
    return run_id, run


async def _read(request: web.Request, limit: int) -> bytes | web.Response:
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return _error(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def post_events(request: web.Request) -> web.Response:
    """Store events idempotently by `seq`; the first one shows the sandbox is running."""
    found = await _authorised_run(request)
    if isinstance(found, web.Response):
        return found
    run_id, run = found
    body = await _read(request, MAX_EVENTS_BYTES)
    if isinstance(body, web.Response):
        return body
    try:
        parsed = EventsBody.validate_json(body)
    except ValidationError as exc:
        return _error(400, _explain(exc))
    events = parsed if isinstance(parsed, list) else [parsed]
    for item in events:
        if len(orjson.dumps(item.data)) > MAX_EVENT_DATA_BYTES:
            return _error(413, f"event {item.seq}: data over {MAX_EVENT_DATA_BYTES} bytes")
    if RunState(run.state) in FINAL_STATES:
        return _error(409, f"run {run_id} is {run.state}; no more events are taken")
    engine = request.app[ENGINE_KEY]()
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    now = utcnow()
    rows = [{"run_id": run_id, "seq": e.seq, "ts": _when(e.ts, now), "kind": e.kind,
             "data": e.data} for e in events]
    if rows:
        async with engine.begin() as conn:
            await conn.execute(
                dialect.insert(run_events).on_conflict_do_nothing(
                    index_elements=["run_id", "seq"]), rows)
            if run.state == RunState.STARTING:
                await transition(conn, run_id, RunState.RUNNING, "sandbox reported")
    return web.json_response({"stored": len(rows)})


async def put_result(request: web.Request) -> web.Response:
    """Store the run's result once; a second, identical upload is a success too."""
    found = await _authorised_run(request)
    if isinstance(found, web.Response):
        return found
    run_id, run = found
    body = await _read(request, request.app[RESULT_LIMIT_KEY])
    if isinstance(body, web.Response):
        return body
    try:
        result = Result.model_validate_json(body)
    except ValidationError as exc:
        return _error(400, _explain(exc))
    stored = result.model_dump(mode="json")
    if run.result is not None:
        if run.result == stored:
            return web.json_response({"stored": False, "state": run.state})
        return _error(409, "a different result was stored for this run already")
    if RunState(run.state) in FINAL_STATES:
        return _error(409, f"run {run_id} is {run.state}; its result is no longer taken")
    if run.state == RunState.QUEUED:
        # Not a conflict: the scheduler has not marked the start yet. The sandbox retries a
        # 503, while it would take a 409 for "already stored" and drop the result.
        response = _error(503, f"run {run_id} has not started yet; try again")
        response.headers["Retry-After"] = "5"
        return response
    engine = request.app[ENGINE_KEY]()
    async with engine.begin() as conn:
        changed = await conn.execute(
            update(runs).where(runs.c.id == run_id, runs.c.result.is_(None))
            .values(result=stored, summary=result.summary[:65_536], updated_at=utcnow()))
        if changed.rowcount != 1:
            return _error(409, "a result was stored for this run already")
        if run.state == RunState.STARTING:
            await transition(conn, run_id, RunState.RUNNING, "sandbox reported")
    log.info("result stored", extra={"run_id": run_id, "status": result.status,
                                     "changes": len(result.changes)})
    try:
        await request.app[RESULT_HOOK_KEY](run_id, result)
    except Exception:
        # The result is safe in the database and the sandbox's exit brings the run to its
        # end anyway; a 500 here would only make the sandbox upload it again.
        log.exception("the result hook failed", extra={"run_id": run_id})
    return web.json_response({"stored": True})


async def get_session(request: web.Request) -> web.Response:
    """The earlier run's session, to the active run that was given it to resume, and only
    while that earlier run is of the same repository; 404 otherwise."""
    found = await _authorised_run(request)
    if isinstance(found, web.Response):
        return found
    run_id, _ = found
    engine = request.app[ENGINE_KEY]()
    async with engine.connect() as conn:
        run = (await conn.execute(select(runs.c.state, runs.c.repo_id, runs.c.agent,
                                         runs.c.number, runs.c.config)
                                  .where(runs.c.id == run_id))).one()
        resume_from = ((run.config or {}).get("session") or {}).get("resume_from")
        earlier = None
        if isinstance(resume_from, int) and not isinstance(resume_from, bool):
            earlier = (await conn.execute(select(
                runs.c.repo_id, runs.c.agent, runs.c.number, runs.c.pr_number).where(
                runs.c.id == resume_from, runs.c.id < run_id))).first()
    if run.state not in (RunState.STARTING, RunState.RUNNING):
        return _error(409, f"run {run_id} is {run.state}; it takes no session")
    # Only into a later run of the same repository, issue or pull request (the one it
    # opened), and agent, whatever the run's config says.
    if (earlier is None or not isinstance(resume_from, int)
            or earlier.repo_id != run.repo_id or earlier.agent != run.agent
            or run.number not in (earlier.number, earlier.pr_number)):
        return _error(404, "this run resumes no session")
    archive = await stored_sessions.load(engine, resume_from, request.app[SESSION_DIR_KEY])
    if archive is None:
        return _error(404, f"the session of run {resume_from} is gone (expired or deleted)")
    return web.Response(body=archive, content_type="application/gzip")


async def put_session(request: web.Request) -> web.Response:
    """Store the run's agent session (before its result), checked and redacted; a session
    refused is said in a 4xx and never fails the run."""
    found = await _authorised_run(request)
    if isinstance(found, web.Response):
        return found
    run_id, run = found
    limit = request.app[SESSION_LIMIT_KEY]
    if not limit:
        return _error(403, "sessions are not kept (AGENTBOT_SESSION_MAX_BYTES is 0)")
    if RunState(run.state) not in (RunState.STARTING, RunState.RUNNING) or run.result:
        return _error(409, f"run {run_id} is {run.state}; its session is no longer taken")
    body = await _read(request, limit)
    if isinstance(body, web.Response):
        return body
    engine = request.app[ENGINE_KEY]()
    async with engine.connect() as conn:
        agent = (await conn.execute(select(runs.c.agent).where(runs.c.id == run_id))
                 ).scalar_one()
    try:
        session = await asyncio.to_thread(checked_archive, body, agent, limit)
        archive = await asyncio.to_thread(repack, session, limit)
    except ArchiveError as exc:
        log.warning("a session was refused: %s", exc, extra={"run_id": run_id})
        return _error(400, f"session refused: {exc}")
    await stored_sessions.store(engine, run_id, agent, session.session_id, archive,
                                request.app[SESSION_DIR_KEY])
    log.info("session stored", extra={"run_id": run_id, "bytes": len(archive)})
    return web.json_response({"stored": True, "bytes": len(archive)})


def _when(ts: float | str, default: dt.datetime) -> dt.datetime:
    """The sandbox's own timestamp of an event (epoch seconds or ISO 8601), else `default`."""
    try:
        if isinstance(ts, str):
            parsed = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
        return dt.datetime.fromtimestamp(ts, dt.UTC)
    except (ValueError, OverflowError, OSError):
        return default


def _explain(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def add_routes(app: web.Application, engine: AsyncEngine | Callable[[], AsyncEngine],
               key: bytes, on_result: ResultHook, result_limit: int, *,
               session_limit: int = 0, session_dir: Path | None = None) -> None:
    """Mount the internal API on `app`; `engine` may be a callable for an engine made later.
    Sessions are taken up to `session_limit` bytes (0: none), kept in `session_dir` or the
    database."""
    app[ENGINE_KEY] = engine if callable(engine) else (lambda: engine)
    app[TOKEN_KEY_KEY] = key
    app[RESULT_HOOK_KEY] = on_result
    app[RESULT_LIMIT_KEY] = result_limit
    app[SESSION_LIMIT_KEY] = session_limit
    app[SESSION_DIR_KEY] = session_dir
    app.router.add_post("/internal/runs/{run_id}/events", post_events)
    app.router.add_put("/internal/runs/{run_id}/result", put_result)
    app.router.add_get("/internal/runs/{run_id}/session", get_session)
    app.router.add_put("/internal/runs/{run_id}/session", put_session)
