"""The local executor: `python -m sandbox` as a local subprocess, under bwrap when installed."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from pathlib import Path
from typing import IO, Any

import bot
from bot.executors.base import RunSpec, SandboxPhase, SandboxSecrets, SandboxStatus
from bot.executors.local_net import NET_DIR, Relay, endpoints
from bot.executors.local_runs import RunRecord, RunStore
from sandbox import exitcodes, sessions
from sandbox.spec import CALLBACK_TOKEN_FILE, GATEWAY_TOKEN_FILE, SPEC_FILE

log = logging.getLogger(__name__)

STATE_DIR_ENV = "AGENTBOT_LOCAL_STATE_DIR"
DEFAULT_STATE_DIR = Path(".agentbot/runs")
NOT_ISOLATED = ("the local executor does not isolate: sandboxes run as this user on this "
                "machine, with its network; bubblewrap is not installed, so the gateway's egress "
                "proxy is set for them but not enforced; use the kubernetes executor for "
                "untrusted work")
LITTLE_ISOLATION = ("the local executor isolates little: sandboxes run as this user under "
                    "bubblewrap at {bwrap} (host filesystem read-only, a network namespace whose "
                    "only ways out are the gateway and the bot's internal port, relayed through "
                    "Unix sockets); use the kubernetes executor for untrusted work")
# `sandbox` ships beside `bot` in the one distribution; found through `bot`, a `sandbox`
# folder in the current directory cannot shadow it.
SANDBOX_ROOT = Path(bot.__file__).resolve().parent.parent
# What a sandbox inherits from the bot's environment: the basics, nothing else. No model key
# (the gateway holds the keys), no proxy of the bot's (the gateway is the sandbox's proxy),
# never the App's key or webhook secret nor the bot's own AGENTBOT_* settings.
_PASS_NAMES = frozenset({"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SSL_CERT_FILE",
                         "SSL_CERT_DIR"})
# The shell stays outside the sandbox and records the exit code, so that an executor started
# after a restart can still learn how an adopted sandbox ended.
_WRAPPER = ('"$@"; code=$?; printf %s "$code" > exit-code.tmp && mv exit-code.tmp exit-code; '
            'exit "$code"')


def default_state_dir() -> Path:
    """Where run records live: `AGENTBOT_LOCAL_STATE_DIR`, else ./.agentbot/runs."""
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def default_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The part of the bot's environment a sandbox may see."""
    return {k: v for k, v in environ.items() if k in _PASS_NAMES}


def bwrap_argv(bwrap: str, run_dir: Path, *, private_network: bool = False,
               keep: tuple[Path, ...] = ()) -> list[str]:
    """bubblewrap around the runner: host filesystem read-only, the run's directory and a
    private /tmp writable, its own process namespace, and (`private_network`) a network
    namespace with loopback only, whose way out is the run's relay sockets.

    `keep` are directories the runner needs (its interpreter, the code): those under /tmp
    would be hidden by the private /tmp, so they are bound into it again, read-only."""
    private_tmp = "/tmp"  # noqa: S108 - a fresh tmpfs inside the sandbox, not the host's /tmp
    again: list[str] = []
    for path in sorted({str(p) for p in keep if Path(p).is_relative_to(private_tmp)}):
        again += ["--ro-bind", path, path]
    return [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", private_tmp, *again, "--bind", str(run_dir), str(run_dir),
            "--unshare-pid", *(["--unshare-net"] if private_network else []),
            "--die-with-parent", "--chdir", str(run_dir), "--"]


class LocalExecutor:
    """Runs each sandbox as a local process; statuses come from process exits."""

    name = "local"

    def __init__(self, *, state_dir: Path, python: str = sys.executable,
                 env: Mapping[str, str] | None = None, bwrap: str | bool = True,
                 deadline_grace_seconds: float = 30.0, kill_grace_seconds: float = 5.0,
                 run_root: Path | None = None, keep_run_dirs: bool = False) -> None:
        self._store = RunStore(state_dir)
        self._python = python
        self._env = dict(env) if env is not None else default_env()
        found = shutil.which("bwrap") if bwrap is True else bwrap or None
        self._bwrap: str | None = found if isinstance(found, str) else None
        self._deadline_grace = deadline_grace_seconds
        self._kill_grace = kill_grace_seconds
        self._run_root = run_root  # where per-run directories go; None: the system's temp
        self._keep = keep_run_dirs
        self._queue: asyncio.Queue[SandboxStatus | None] = asyncio.Queue()
        self._watchers: dict[int, asyncio.Task[None]] = {}
        self._records: dict[int, RunRecord] = {}
        self._cancelled: set[int] = set()
        self._closed = False
        self._relays: dict[int, Relay] = {}
        log.warning(LITTLE_ISOLATION.format(bwrap=self._bwrap) if self._bwrap else NOT_ISOLATED)

    # --- the protocol ----------------------------------------------------------------------

    async def start(self, spec: RunSpec, secrets: SandboxSecrets) -> None:
        """Start the runner for `spec.run_id`; a run already started is left alone."""
        run_id = spec.run_id
        existing = self._records.get(run_id) or await asyncio.to_thread(self._store.load, run_id)
        if existing is not None:
            return
        run_dir, output = await asyncio.to_thread(self._prepare, spec, secrets)
        targets = endpoints(spec) if self._bwrap else None
        if self._bwrap and targets is None:
            log.warning("run %d: the gateway or the internal URL is not on loopback, so its "
                        "sandbox shares this machine's network", run_id)
        try:
            if targets is not None:
                await self._relay(run_id, run_dir, targets)
            process = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", _WRAPPER, "agentbot-sandbox",
                *self._argv(run_dir, private_network=targets is not None), cwd=run_dir,
                env=self._sandbox_env(run_dir, relay=targets is not None),
                stdin=asyncio.subprocess.DEVNULL, stdout=output,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except BaseException:
            await self._close_relay(run_id)
            raise
        finally:
            output.close()
        ticks = sessions.start_ticks(process.pid) or 0
        record = RunRecord(run_id, process.pid, ticks, str(run_dir),
                           time.time() + spec.limits.timeout_seconds + self._deadline_grace,
                           spec.limits.timeout_seconds,
                           relay=[list(t) for t in targets] if targets is not None else None)
        self._records[run_id] = record
        await asyncio.to_thread(self._store.save, record)
        log.info("started the local sandbox of run %d (pid %d)", run_id, process.pid)
        self._queue.put_nowait(SandboxStatus(run_id, SandboxPhase.RUNNING))
        self._watch(run_id, self._wait_child(record, process))

    async def cancel(self, run_id: int) -> None:
        """Stop the run's processes (SIGTERM, then SIGKILL) and remove its files."""
        record = self._records.get(run_id) or await asyncio.to_thread(self._store.load, run_id)
        if record is None:
            return
        self._cancelled.add(run_id)
        await self._stop(record)
        if run_id not in self._watchers:  # nobody waits on it: clean up here
            await self._finish(record, None, timed_out=False)

    async def reconcile(self, active_run_ids: set[int]) -> list[SandboxStatus]:
        """Adopt the processes of active runs; report how the others ended, or GONE."""
        records = {r.run_id: r for r in await asyncio.to_thread(self._store.load_all)}
        statuses = []
        for run_id in sorted(active_run_ids):
            record = records.pop(run_id, None)
            if run_id in self._watchers:
                statuses.append(SandboxStatus(run_id, SandboxPhase.RUNNING))
            elif record is None:
                statuses.append(SandboxStatus(run_id, SandboxPhase.GONE,
                                              "no local sandbox process exists for this run"))
            elif await asyncio.to_thread(sessions.alive, record.pid, record.start_ticks):
                self._records[run_id] = record
                if record.relay is not None:  # its way out died with the previous process
                    await self._relay(run_id, Path(record.run_dir),
                                      [(str(h), int(p)) for h, p in record.relay])
                self._watch(run_id, self._wait_adopted(record))
                statuses.append(SandboxStatus(run_id, SandboxPhase.RUNNING))
            else:
                code = await asyncio.to_thread(record.exit_code)
                statuses.append(await self._finish(record, code, timed_out=False, report=False))
        for record in records.values():  # runs that ended (or were cancelled) while we were away
            if record.run_id in self._watchers:
                continue
            await self._stop(record)
            await self._finish(record, None, timed_out=False, report=False)
        return statuses

    async def statuses(self) -> AsyncIterator[SandboxStatus]:
        """Status changes of every sandbox this executor started or adopted."""
        while (status := await self._queue.get()) is not None:
            yield status

    async def close(self) -> None:
        """Stop watching; running sandboxes keep running and can be adopted later."""
        if self._closed:
            return
        self._closed = True
        for task in self._watchers.values():
            task.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)
        for run_id in list(self._relays):
            await self._close_relay(run_id)
        self._queue.put_nowait(None)

    # --- watching --------------------------------------------------------------------------

    def _watch(self, run_id: int, waiter: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(waiter)
        self._watchers[run_id] = task
        task.add_done_callback(lambda _t: self._watchers.pop(run_id, None))

    async def _wait_child(self, record: RunRecord, process: asyncio.subprocess.Process) -> None:
        timed_out = False
        try:
            code = await asyncio.wait_for(process.wait(), max(0.0, record.deadline - time.time()))
        except TimeoutError:
            timed_out = True
            await self._stop(record)
            code = await process.wait()
        await self._finish(record, code, timed_out=timed_out)

    async def _wait_adopted(self, record: RunRecord) -> None:
        # Not our child: poll for its end (a pidfd would need the same pid-reuse care).
        timed_out = False
        while await asyncio.to_thread(sessions.alive, record.pid, record.start_ticks):
            if time.time() >= record.deadline and not timed_out:
                timed_out = True
                await self._stop(record)
            await asyncio.sleep(0.2)
        await self._finish(record, await asyncio.to_thread(record.exit_code),
                           timed_out=timed_out)

    async def _stop(self, record: RunRecord) -> None:
        if not await self._signal(record, signal.SIGTERM):
            return
        deadline = time.monotonic() + self._kill_grace
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if not await asyncio.to_thread(sessions.members, record.pid):
                return
        await self._signal(record, signal.SIGKILL)

    async def _signal(self, record: RunRecord, signum: int) -> bool:
        return await asyncio.to_thread(sessions.signal_session, record.pid, record.start_ticks,
                                       signum)

    async def _finish(self, record: RunRecord, code: int | None, *, timed_out: bool,
                      report: bool = True) -> SandboxStatus:
        status = await asyncio.to_thread(self._status, record, code, timed_out)
        # Whatever the sandbox left in its session (a daemon started by setup) goes too.
        await self._signal(record, signal.SIGKILL)
        await self._close_relay(record.run_id)
        self._records.pop(record.run_id, None)
        await asyncio.to_thread(self._cleanup, record)
        if report:
            self._queue.put_nowait(status)
        log.info("local sandbox of run %d: %s %s", record.run_id, status.phase, status.reason or "")
        return status

    def _status(self, record: RunRecord, code: int | None, timed_out: bool) -> SandboxStatus:
        run_id = record.run_id
        if run_id in self._cancelled:
            self._cancelled.discard(run_id)
            return SandboxStatus(run_id, SandboxPhase.GONE, "the sandbox was cancelled")
        if timed_out:
            return SandboxStatus(run_id, SandboxPhase.TIMED_OUT, "DeadlineExceeded: the "
                                 f"sandbox ran past its {record.timeout_seconds}s limit")
        if code == 0:
            return SandboxStatus(run_id, SandboxPhase.SUCCEEDED, exit_code=0)
        if code is None:
            return SandboxStatus(run_id, SandboxPhase.GONE,
                                 "the sandbox process ended without recording an exit code")
        message = record.termination_message()
        reason = f"exit code {code} ({exitcodes.describe(code)})"
        reason += f": {message}" if message else ""
        return SandboxStatus(run_id, SandboxPhase.FAILED, reason, exit_code=code)

    # --- files -----------------------------------------------------------------------------

    async def _relay(self, run_id: int, run_dir: Path, targets: list[tuple[str, int]]) -> None:
        relay = Relay(run_dir, targets)
        await relay.start()
        self._relays[run_id] = relay

    async def _close_relay(self, run_id: int) -> None:
        relay = self._relays.pop(run_id, None)
        if relay is not None:
            await relay.close()

    def _argv(self, run_dir: Path, *, private_network: bool = False) -> list[str]:
        runner = [self._python, "-m", "sandbox"]
        if not self._bwrap:
            return runner
        # The interpreter's installation and the code, wherever they are (a CI's venv and
        # checkout may well live under /tmp).
        python = Path(self._python)
        keep = (SANDBOX_ROOT, Path(sys.prefix), Path(sys.base_prefix), python.parent.parent,
                python.resolve().parent.parent)
        return [*bwrap_argv(self._bwrap, run_dir, private_network=private_network, keep=keep),
                *runner]

    def _sandbox_env(self, run_dir: Path, *, relay: bool = False) -> dict[str, str]:
        env = dict(self._env)
        if relay:
            env["AGENTBOT_RELAY_DIR"] = str(run_dir / NET_DIR)
        env.update({
            "HOME": str(run_dir / "home"),
            # Under bwrap /tmp is a private tmpfs; without it, a directory of the run.
            "TMPDIR": "/tmp" if self._bwrap else str(run_dir / "tmp"),  # noqa: S108
            "AGENTBOT_SPEC_DIR": str(run_dir / "spec"),
            "AGENTBOT_WORKSPACE": str(run_dir / "workspace"),
            "AGENTBOT_TERMINATION_LOG": str(run_dir / "termination-log"),
            "PYTHONPATH": str(SANDBOX_ROOT),
        })
        return env

    def _prepare(self, spec: RunSpec, secrets: SandboxSecrets) -> tuple[Path, IO[bytes]]:
        if self._run_root is not None:
            self._run_root.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix=f"agentbot-run-{spec.run_id}-",
                                        dir=self._run_root))  # mode 0700
        spec_dir = run_dir / "spec"
        spec_dir.mkdir(mode=0o700)
        files = {SPEC_FILE: json.dumps(spec.to_json_dict()), GATEWAY_TOKEN_FILE:
                 secrets.gateway_token, CALLBACK_TOKEN_FILE: secrets.callback_token}
        for name, text in files.items():
            fd = os.open(spec_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        for name in ("home", "tmp"):
            (run_dir / name).mkdir(mode=0o700)
        return run_dir, open(run_dir / "sandbox.log", "ab")  # noqa: SIM115 - handed to the child

    def _cleanup(self, record: RunRecord) -> None:
        run_dir = Path(record.run_dir)
        # The token files go in any case; the rest only when nobody asked to keep it.
        shutil.rmtree(run_dir / "spec" if self._keep else run_dir, ignore_errors=True)
        self._store.remove(record.run_id)
