"""The agent's session across runs: the earlier one restored before the agent starts, this
run's packed (redacted, capped) after it ends."""

from __future__ import annotations

import logging
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sandbox.agents import Adapter
from sandbox.archive import ArchiveError, Session, pack, read_files, unpack, write_files
from sandbox.callbacks import CallbackClient, CallbackError
from sandbox.events import Redactor

log = logging.getLogger("sandbox.resume")

CLI_SECONDS = 60  # for a CLI's own export or import of a session
NOTE_MISSING = "the bot had no session of the earlier run to give (never stored, or expired)"
NOTE_UNREACHABLE = "the earlier session could not be fetched ({error})"
NOTE_REFUSED_ARCHIVE = "the earlier session was refused: {error}"
NOTE_OTHER_AGENT = "the earlier session is {agent}'s, and this run's agent is {this}"
NOTE_NOT_RESUMABLE = "{agent} cannot continue an earlier session here"
NOTE_CLI_REFUSED = "the agent could not load the earlier session ({error})"


@dataclass
class Plan:
    """The session of this run: its id, whether it continues the earlier one, and why not
    where a resume was asked for and did not happen."""

    session_id: str
    resume: bool = False
    note: str | None = None

    def fresh(self, note: str) -> None:
        """Start over with a new session, saying why."""
        log.warning("starting a fresh session: %s", note)
        self.session_id, self.resume, self.note = str(uuid.uuid4()), False, note


def prepare(adapter: Adapter, resume: bool, max_bytes: int, client: CallbackClient,
            env: Mapping[str, str], workspace: Path) -> Plan:
    """The plan for this run's session, with the earlier one written where the CLI looks for
    it when there is one to resume."""
    plan = Plan(str(uuid.uuid4()))
    if not resume:
        return plan
    try:
        archive = client.get_session()
    except CallbackError as exc:
        plan.fresh(NOTE_UNREACHABLE.format(error=exc))
        return plan
    if archive is None:
        plan.fresh(NOTE_MISSING)
        return plan
    try:
        session = unpack(archive, max_bytes)
        if session.agent != adapter.name:
            plan.fresh(NOTE_OTHER_AGENT.format(agent=session.agent, this=adapter.name))
            return plan
        root = adapter.session_root(env, workspace)
        write_files(session, root)
        _import(adapter, root, session.session_id, env, workspace)
    except (ArchiveError, OSError, subprocess.SubprocessError) as exc:
        plan.fresh(NOTE_REFUSED_ARCHIVE.format(error=exc))
        return plan
    log.info("resuming session %s (%d files)", session.session_id, len(session.files))
    plan.session_id, plan.resume = session.session_id, True
    return plan


def collect(adapter: Adapter, plan: Plan, max_bytes: int, env: Mapping[str, str],
            workspace: Path, redactor: Redactor) -> bytes | None:
    """This run's session as an archive with the run's credentials masked, or None when the
    CLI left none or it is over the cap (said in the log: the next run starts fresh)."""
    root = adapter.session_root(env, workspace)
    try:
        _export(adapter, root, plan.session_id, env, workspace)
        files = read_files(root, adapter.session_names(root, plan.session_id), 4 * max_bytes)
        if not files:
            log.info("the agent left no session files in %s", root)
            return None
        masked = {name: _masked(content, redactor) for name, content in files.items()}
        return pack(Session(adapter.name, plan.session_id, masked), max_bytes)
    except (ArchiveError, OSError, subprocess.SubprocessError) as exc:
        log.warning("the session is not kept: %s", exc)
        return None


def _import(adapter: Adapter, root: Path, session_id: str, env: Mapping[str, str],
            workspace: Path) -> None:
    """Load an exported session into the CLI (for one that keeps sessions in a database)."""
    argv = adapter.session_import(root / f"{session_id}.json")
    if argv is None:
        return
    done = subprocess.run(argv, cwd=workspace, env=dict(env), capture_output=True,  # noqa: S603
                          timeout=CLI_SECONDS, check=False, stdin=subprocess.DEVNULL)
    if done.returncode:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise ArchiveError(f"{argv[0]} could not import it: {tail[0][:200]}")


def _export(adapter: Adapter, root: Path, session_id: str, env: Mapping[str, str],
            workspace: Path) -> None:
    """Have the CLI print its session into `root` (for one that keeps them in a database)."""
    argv = adapter.session_export(session_id)
    if argv is None:
        return
    done = subprocess.run(argv, cwd=workspace, env=dict(env), capture_output=True,  # noqa: S603
                          timeout=CLI_SECONDS, check=False, stdin=subprocess.DEVNULL)
    if done.returncode or not done.stdout.strip():
        raise ArchiveError(f"{argv[0]} could not export session {session_id}")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_files(Session(adapter.name, session_id, {f"{session_id}.json": done.stdout}), root)


def _masked(content: bytes, redactor: Redactor) -> bytes:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        text = content.decode("utf-8", "surrogateescape")
        return redactor.text(text).encode("utf-8", "surrogateescape")
    return redactor.text(text).encode("utf-8")
