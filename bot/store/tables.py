"""SQLAlchemy tables and the database handle (SQLite WAL or PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.store import sqlite

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT on PostgreSQL, but INTEGER on SQLite so that it stays the rowid alias.
Id = BigInteger().with_variant(Integer(), "sqlite")
# A run's state. SQLite keeps the 16 characters the first schema declared: it stores text of
# any length in a VARCHAR, and widening it there would mean copying `runs` (see 0007).
StateName = String(32).with_variant(String(16), "sqlite")


class RunState(enum.StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    # The model budget ran out: the work so far is published as a partial draft PR.
    BUDGET_EXCEEDED = "budget_exceeded"
    # Asked for by someone without write access: waits for a writer's `/agent approve`.
    AWAITING_APPROVAL = "awaiting_approval"
    DENIED = "denied"  # a writer said `/agent deny`
    EXPIRED = "expired"  # nobody approved it within AGENTBOT_APPROVAL_TTL


ACTIVE_STATES = (RunState.AWAITING_APPROVAL, RunState.QUEUED, RunState.STARTING,
                 RunState.RUNNING)
FINAL_STATES = (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.TIMED_OUT,
                RunState.BUDGET_EXCEEDED, RunState.DENIED, RunState.EXPIRED)

# Which state may follow which; anything else is a bug or a stale writer and is refused.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.AWAITING_APPROVAL: frozenset(
        {RunState.QUEUED, RunState.DENIED, RunState.EXPIRED, RunState.CANCELLED}),
    # Back to awaiting_approval: what the approval covered changed before the run started.
    RunState.QUEUED: frozenset({RunState.STARTING, RunState.CANCELLED, RunState.FAILED,
                                RunState.AWAITING_APPROVAL}),
    RunState.STARTING: frozenset(
        {RunState.RUNNING, RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED,
         RunState.TIMED_OUT, RunState.BUDGET_EXCEEDED}
    ),
    RunState.RUNNING: frozenset(
        {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.TIMED_OUT,
         RunState.BUDGET_EXCEEDED}
    ),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.CANCELLED: frozenset(),
    RunState.TIMED_OUT: frozenset(),
    RunState.BUDGET_EXCEEDED: frozenset(),
    RunState.DENIED: frozenset(),
    RunState.EXPIRED: frozenset(),
}


# The partial unique index's condition: one active run per issue or PR.
ACTIVE_WHERE = "state IN ({})".format(", ".join(f"'{state.value}'" for state in ACTIVE_STATES))
# Variants of a group are left out of the index: a group's N runs are active together, and the
# ledger keeps a group and a single run of one issue from overlapping (runs.ledger).
ACTIVE_SINGLE_WHERE = ACTIVE_WHERE + " AND group_id IS NULL"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(when: dt.datetime) -> dt.datetime:
    """A stored time as an aware UTC datetime (SQLite hands them back naive)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_id", String(64), nullable=False, unique=True),
    Column("event", String(64), nullable=False),
    Column("action", String(64)),
    Column("installation_id", BigInteger),
    Column("payload", LargeBinary, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False, default=DeliveryStatus.PENDING),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime(timezone=True)),
    Column("done_handlers", JSON, nullable=False, default=list),
    Column("last_error", Text),
    Column("processed_at", DateTime(timezone=True)),
    # The SHA-256 of the signed body: the same body under another delivery id is a replay.
    Column("payload_sha256", LargeBinary(32)),
    Index("ix_deliveries_status_next", "status", "next_attempt_at"),
    Index("uq_deliveries_payload_sha256", "payload_sha256", unique=True),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("state", StateName, nullable=False, default=RunState.QUEUED),
    Column("last_reported_state", StateName),
    # where
    Column("installation_id", BigInteger, nullable=False),
    Column("repo_id", BigInteger, nullable=False),
    Column("repo_full_name", String(200), nullable=False),
    Column("clone_url", String(500), nullable=False),
    Column("number", Integer, nullable=False),  # issue or PR number
    Column("is_pull_request", Boolean, nullable=False, default=False),
    Column("base_ref", String(255), nullable=False),
    Column("base_sha", String(64)),
    Column("head_ref", String(255)),  # the PR's branch when iterating on a PR
    # who and why
    Column("trigger", String(32), nullable=False),  # label | comment | review_comment | retry
    Column("sender_login", String(100), nullable=False),
    Column("sender_id", BigInteger, nullable=False),
    Column("delivery_id", String(64), nullable=False, unique=True),
    Column("comment_id", BigInteger),
    Column("retry_of", ForeignKey("runs.id")),
    # what: the prompt inputs
    Column("title", Text, nullable=False, default=""),
    Column("body", Text, nullable=False, default=""),
    Column("instructions", Text, nullable=False, default=""),
    Column("context", JSON, nullable=False, default=dict),  # review comment file/line/hunk
    Column("agent", String(32), nullable=False),
    Column("model", String(100)),
    Column("timeout_seconds", Integer, nullable=False),
    # progress and outcome
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("error", Text),
    Column("summary", Text),
    Column("result", JSON),
    Column("branch", String(255)),
    Column("pr_number", Integer),
    Column("check_run_id", BigInteger),
    Column("status_comment_id", BigInteger),
    # the repository's .github/agentbot.yml as it applied to this run (capped by the operator)
    Column("config", JSON),
    Column("base_tree", String(64)),  # the tree of base_sha, the commit's starting point
    Column("commit_sha", String(64)),
    Column("pr_url", String(500)),
    # pending once a successful result waits to be published, done after
    Column("publish_state", String(16)),
    Column("last_reported_at", DateTime(timezone=True)),
    Column("last_reported_seq", Integer),  # the newest event the check run has shown
    # Which process publishes or reports this run now: replicas take turns through it.
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime(timezone=True)),
    # When the gateway first refused a model request because the run's budget was spent, and
    # which limit that was: the run then ends budget_exceeded.
    Column("budget_reached_at", DateTime(timezone=True)),
    Column("budget_reached", String(100)),
    # Who wrote what the prompt is built from, and whether they may write to the repository:
    # {"author", "author_writes", "requester", "sender_writes"}. The prompt quotes the
    # parts of people without write access as data.
    Column("provenance", JSON),
    # The SHA-256 of the prompt's inputs (bot.runs.prompt.inputs_digest) as the request
    # was made; an approval holds only while GitHub still shows the same.
    Column("inputs_sha256", String(64)),
    Column("approved_by", String(100)),
    Column("approved_at", DateTime(timezone=True)),
    # A variant of a group (run_groups): its group and its number there, 1..N. No foreign
    # key: adding one on SQLite rebuilds `runs` (see migration 0008).
    Column("group_id", BigInteger, index=True),
    Column("variant", Integer),
    # One active run per issue or PR, enforced by the database so that two replicas
    # racing on two deliveries cannot both start one.
    Index(
        "uq_runs_active_per_issue",
        "repo_id",
        "number",
        unique=True,
        sqlite_where=text(ACTIVE_SINGLE_WHERE),
        postgresql_where=text(ACTIVE_SINGLE_WHERE),
    ),
    Index("ix_runs_state_created", "state", "created_at"),
    Index("ix_runs_repo_number", "repo_id", "number"),
    Index("ix_runs_sender_created", "sender_id", "created_at"),
)

# N runs of one request (`--variants N`): one status comment for all of them, and the pick of
# the one a writer keeps, recorded before and after its GitHub writes so that a crash in the
# middle neither loses it nor opens a second PR.
run_groups = Table(
    "run_groups",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("installation_id", BigInteger, nullable=False),
    Column("repo_id", BigInteger, nullable=False),
    Column("repo_full_name", String(200), nullable=False),
    Column("number", Integer, nullable=False),
    Column("size", Integer, nullable=False),
    Column("delivery_id", String(64), nullable=False, unique=True),
    Column("sender_login", String(100), nullable=False),
    Column("retry_of", ForeignKey("run_groups.id")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("status_comment_id", BigInteger),
    # Each change the status comment shows (a variant ending, the pick) adds one to
    # `version`; the reporter writes the comment until `reported_version` catches up.
    Column("version", Integer, nullable=False, default=1),
    Column("reported_version", Integer, nullable=False, default=0),
    Column("picked_variant", Integer),
    Column("picked_by", String(100)),
    Column("picked_at", DateTime(timezone=True)),
    Column("pick_state", String(16)),  # pending | done | failed
    Column("pick_error", Text),
    Column("pick_delivery_id", String(64)),  # the `/agent pick` that asked for it
    # Which process writes the group's comment now (replicas take turns, as on runs).
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime(timezone=True)),
    Index("ix_run_groups_repo_number", "repo_id", "number"),
)

run_transitions = Table(
    "run_transitions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("from_state", StateName),
    Column("to_state", StateName, nullable=False),
    Column("reason", Text),
    Column("at", DateTime(timezone=True), nullable=False),
)

run_events = Table(
    "run_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("data", JSON, nullable=False),
    UniqueConstraint("run_id", "seq", name="uq_run_events_run_seq"),
)

# Model usage the gateway read from each provider response of a run (the budget's ledger).
run_usage = Table(
    "run_usage",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("provider", String(16), nullable=False),  # anthropic | openai
    Column("model", String(100)),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cache_read_tokens", BigInteger, nullable=False, default=0),
    Column("cache_write_tokens", BigInteger, nullable=False, default=0),
    Column("cost", Float),  # dollars by the price table; None when it has no price for the model
    Index("ix_run_usage_at", "at"),
)

# Usage of all time per installation and model, for the metrics: kept as rows are booked, so
# that neither a scrape sums the whole ledger nor a run's deletion lowers a counter.
usage_totals = Table(
    "usage_totals",
    metadata,
    Column("installation_id", BigInteger, primary_key=True),
    Column("model", String(100), primary_key=True),  # "" when the provider named none
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cache_read_tokens", BigInteger, nullable=False, default=0),
    Column("cache_write_tokens", BigInteger, nullable=False, default=0),
    Column("cost", Float, nullable=False, default=0.0),  # of the priced tokens only
)

# What a run did through the gateway: each egress connection, git request and model request,
# allowed or refused (host, port, bytes, verdict; never a body or a credential).
gateway_audit = Table(
    "gateway_audit",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),  # egress | git | model
    Column("data", JSON, nullable=False),
)

# Every GitHub side effect, recorded before it is made and completed after, so that work
# redone after a crash finds it instead of repeating it.
github_effects = Table(
    "github_effects",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False, unique=True),
    Column("status", String(16), nullable=False),  # pending | done
    Column("result", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


# Leases of the loops only one replica may run at a time (by name, e.g. "redeliver").
loop_leases = Table(
    "loop_leases",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime(timezone=True)),
)

# Failed webhook deliveries the App asked GitHub to send again, by their X-GitHub-Delivery
# GUID: what keeps the reconciler from asking twice at once, or forever.
redeliveries = Table(
    "redeliveries",
    metadata,
    Column("guid", String(64), primary_key=True),
    Column("event", String(64), nullable=False),
    Column("hook_delivery_id", BigInteger, nullable=False),  # GitHub's id of the attempt
    Column("tries", Integer, nullable=False),
    Column("asked_at", DateTime(timezone=True), nullable=False),
    Column("gave_up_at", DateTime(timezone=True)),
    Index("ix_redeliveries_asked_at", "asked_at"),
)

# The agent session a run's sandbox handed back (redacted, checked, packed again by the bot),
# for the next run of the same pull request or issue to resume. Its archive is in `data`, or
# in a file of AGENTBOT_SESSION_DIR; retention drops it with the run's events and keeps the
# row, marked expired, so that the next run can say why it started fresh.
run_sessions = Table(
    "run_sessions",
    metadata,
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("agent", String(32), nullable=False),
    Column("session_id", String(128), nullable=False),
    Column("size", Integer, nullable=False),  # bytes of the archive
    Column("sha256", String(64), nullable=False),
    Column("stored_at", DateTime(timezone=True), nullable=False),
    Column("expired_at", DateTime(timezone=True)),
    Column("data", LargeBinary),
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a delivery we answered 202 for survives a power cut, not just a crash.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class SQLiteEngine(AsyncEngine):
    """SQLite lets one writer in at a time, and a writer that finds the file locked sleeps in
    growing steps (up to 100 ms) before it looks again: with many concurrent writers in one
    process (a burst of triggers) that added seconds to a transaction of a millisecond. The
    process's write transactions (`begin()`) queue here instead, in order, and find the file
    free. A transaction nested in its own task's goes through, as before."""

    def __init__(self, sync_engine: Any) -> None:
        super().__init__(sync_engine)
        self._writer: asyncio.Lock | None = None
        self._writing: asyncio.Task[Any] | None = None

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        task = asyncio.current_task()
        if task is not None and self._writing is task:
            async with super().begin() as conn:
                yield conn
            return
        if self._writer is None:
            self._writer = asyncio.Lock()
        async with self._writer:
            self._writing = task
            try:
                async with super().begin() as conn:
                    yield conn
            finally:
                self._writing = None


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout on every connection, and its write
    transactions queued in the process (SQLiteEngine)."""
    if url.startswith("sqlite"):
        if url.startswith("sqlite+aiosqlite:"):  # one trip to its thread per statement
            url = f"sqlite+{sqlite.DRIVER}:" + url[len("sqlite+aiosqlite:"):]
        engine = create_async_engine(url, connect_args={"timeout": 5})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return SQLiteEngine(engine.sync_engine)
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
