"""The run: checkout -> setup -> agent -> changeset -> upload, with one exit code per failure."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sandbox import exitcodes, procs, resume
from sandbox.agents import Adapter, adapter_for
from sandbox.archive import SESSION_ID
from sandbox.callbacks import CallbackClient, CallbackError
from sandbox.changeset import ChangesetError, collect
from sandbox.checkout import CheckoutError, add_excludes, checkout, trust_env
from sandbox.events import Event, EventSink, Redactor, log_line, phase
from sandbox.gateway import PROVIDER_VARIABLES, provider_env, proxy_env
from sandbox.parsers.base import StreamParser
from sandbox.result import failed, succeeded, write_termination_message
from sandbox.spec import (
    Secrets,
    Spec,
)

log = logging.getLogger("sandbox")

MAX_LOG_LINES = 5000  # per source (setup, agent); past it, only a note is sent
MAX_LOG_CHARS = 2 * 1024 * 1024
FLUSH_SECONDS = 15.0
_HIDDEN_PREFIXES = ("AGENTBOT_", "GIT_CONFIG")
_HIDDEN_NAMES = frozenset({"GITHUB_TOKEN", "GH_TOKEN", "GITHUB_PRIVATE_KEY",
                           "GITHUB_WEBHOOK_SECRET", "GIT_ASKPASS"})
_OWN_ROOT = str(Path(__file__).resolve().parent.parent)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # a terminal's colours in a CLI's message


class Failure(Exception):
    """A step failed; carries the exit code, the phase and the summary for the result."""

    def __init__(self, code: int, phase_name: str, summary: str) -> None:
        super().__init__(summary)
        self.code = code
        self.phase = phase_name
        self.summary = summary


def child_env(base: Mapping[str, str], spec: Spec, prompt_file: Path, secrets: Secrets,
              workspace: Path) -> dict[str, str]:
    """The environment of setup commands and the agent: the runner's environment minus its own
    settings, any provider key or proxy, and anything holding a run credential; plus the
    gateway as the model provider and as the only way out (the proxy)."""
    env = {
        key: value for key, value in base.items()
        if not key.startswith(_HIDDEN_PREFIXES) and key not in _HIDDEN_NAMES
        and key.upper() not in PROVIDER_VARIABLES
        and not any(token in value for token in (secrets.gateway_token, secrets.callback_token))
    }
    # The image puts the runner on PYTHONPATH; the repository's own Python must not see it.
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != _OWN_ROOT]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    # PWD as a shell that changed into the workspace would leave it: OpenCode takes its
    # project directory from $PWD before its own working directory.
    env.update({"AGENTBOT_PROMPT_FILE": str(prompt_file), "AGENTBOT_RUN_ID": str(spec.run_id),
                "AGENTBOT_REPOSITORY": spec.repository, "GIT_TERMINAL_PROMPT": "0",
                "PWD": str(workspace), **trust_env(workspace)})
    if spec.model:
        env["AGENTBOT_MODEL"] = spec.model
    if spec.gateway_url:
        env.update(provider_env(spec.gateway_url, secrets.gateway_token))
    if spec.proxy_url:
        env.update(proxy_env(spec.proxy_url, secrets.gateway_token, spec.gateway_url))
    return env


class LogBudget:
    """Passes events on, but caps log lines per source so a chatty command cannot flood."""

    def __init__(self, sink: EventSink, source: str) -> None:
        self._sink, self._source = sink, source
        self.lines = self.chars = self.suppressed = 0

    def emit(self, event: Event) -> None:
        if event.kind != "log":
            self._sink.emit(event)
            return
        size = len(str(event.data.get("text", "")))
        if self.lines >= MAX_LOG_LINES or self.chars + size > MAX_LOG_CHARS:
            if not self.suppressed:
                self._sink.emit(log_line(self._source, "runner", "further output is not sent "
                                         f"(over {MAX_LOG_LINES} lines or 2 MiB)"))
            self.suppressed += 1
            return
        self.lines += 1
        self.chars += size
        self._sink.emit(event)


class Runner:
    """One run of one spec; `run()` returns the exit code."""

    def __init__(self, spec: Spec, secrets: Secrets, workspace: Path, sink: EventSink,
                 client: CallbackClient, redactor: Redactor, env: Mapping[str, str]) -> None:
        self.spec, self.secrets, self.workspace = spec, secrets, workspace
        self.sink, self.client, self.redactor = sink, client, redactor
        self.tmp = Path(tempfile.mkdtemp(prefix="agentbot-run-"))
        # Outside the checkout, so the prompt never shows up in the changeset.
        self.prompt_file = self.tmp / "prompt.md"
        self.prompt_file.write_text(spec.prompt, encoding="utf-8")
        self.env = child_env(env, spec, self.prompt_file, secrets, workspace)
        self.base_env = dict(env)
        self.stats: dict[str, Any] = {}
        self.session_archive: bytes | None = None  # the agent's session, for the next run
        self.started = time.monotonic()
        self.deadline = self.started + spec.limits.timeout_seconds
        # Time kept back for the changeset and upload, so our own timeout wins the race
        # against the executor's (activeDeadlineSeconds) and the bot hears why.
        self.reserve = min(60.0, 0.1 * spec.limits.timeout_seconds)

    def run(self) -> int:
        try:
            self._timed("checkout", self._checkout)
            self._timed("setup", self._setup)
            try:
                summary = self._timed("agent", self._agent)
            except Failure as failure:
                if failure.code != exitcodes.AGENT:
                    raise
                # The agent stopped with an error (its model budget ran out, say): what it
                # changed so far goes with the failed result, for the bot to publish as partial
                # work where that is the reason.
                return self.fail(failure, partial=self._partial())
            changeset = self._timed("changeset", self._changeset)
            self.stats["total_seconds"] = round(time.monotonic() - self.started, 3)
            result = succeeded(changeset, summary, self.spec.run_id, self.stats)
            size = len(json.dumps(result))
            if size > self.spec.limits.max_result_bytes:
                raise Failure(exitcodes.CHANGESET, "changeset", f"The result is {size} bytes; "
                              f"the limit is {self.spec.limits.max_result_bytes}.")
            self.sink.emit(phase("changeset", "succeeded", **changeset.stats))
        except Failure as failure:
            return self.fail(failure)
        return self._upload(result)

    def _timed(self, name: str, step: Any) -> Any:
        began = time.monotonic()
        try:
            return step()
        finally:
            self.stats[f"{name}_seconds"] = round(time.monotonic() - began, 3)

    def _checkout(self) -> None:
        self.sink.emit(phase("checkout", "started", base_sha=self.spec.base_sha))
        log.info("checkout of %s at %s", self.spec.repository, self.spec.base_sha)
        try:
            checkout(workspace=self.workspace, clone_url=self.spec.clone_url,
                     base_sha=self.spec.base_sha, base_ref=self.spec.base_ref,
                     branch=self.spec.branch, token=self.secrets.gateway_token,
                     env=self.base_env, deadline=self.deadline - self.reserve,
                     on_line=lambda stream, text: self.sink.emit(
                         log_line("checkout", stream, text)))
            add_excludes(self.workspace, adapter_for(self.spec.agent).excludes)
        except (CheckoutError, OSError) as exc:
            raise Failure(exitcodes.CHECKOUT, "checkout", f"Checkout failed: {exc}") from None
        self.sink.emit(phase("checkout", "succeeded"))

    def _setup(self) -> None:
        commands = self.spec.setup
        self.sink.emit(phase("setup", "started", commands=len(commands)))
        limit = self.spec.limits.setup_timeout_seconds
        deadline = min(time.monotonic() + limit, self.deadline - self.reserve)
        shell = shutil.which("bash", path=self.env.get("PATH")) or "/bin/sh"
        budget = LogBudget(self.sink, "setup")
        for number, command in enumerate(commands, start=1):
            self.sink.emit(log_line("setup", "runner", f"$ {command}"))
            try:
                done = procs.run_streaming(
                    [shell, "-c", command], cwd=self.workspace, env=self.env,
                    deadline=deadline, kill_group_after=False,
                    on_line=lambda stream, text: budget.emit(log_line("setup", stream, text)))
            except OSError as exc:
                raise Failure(exitcodes.SETUP, "setup", f"Setup could not start {shell}: "
                              f"{exc.strerror}") from None
            if done.timed_out:
                raise Failure(exitcodes.TIMEOUT, "setup", f"Setup command {number} (`{command}`)"
                              f" ran past the setup time limit of {limit}s and was stopped.")
            if done.returncode:
                raise Failure(exitcodes.SETUP, "setup", f"Setup command {number} (`{command}`) "
                              f"exited with code {done.returncode}.{_tail(done.tail)}")
        self.sink.emit(phase("setup", "succeeded"))

    def _agent(self) -> str | None:
        adapter = adapter_for(self.spec.agent)
        budget = LogBudget(self.sink, "agent")
        self.sink.emit(phase("agent", "started", agent=self.spec.agent, model=self.spec.model))
        env = {**self.env, **adapter.environment(self.spec)}
        refusal = adapter.refusal(os.geteuid(), env)
        if refusal:
            raise Failure(exitcodes.AGENT, "agent", refusal)
        plan = self._session_plan(adapter, env)
        done, parser = self._attempt(adapter, env, budget, plan)
        if plan and plan.resume and (done.returncode or parser.error) and adapter.resume_refused(
                "\n".join([parser.error or "", *done.tail])):
            said = parser.error or next(
                (line for line in reversed(done.tail) if adapter.resume_refused(line)), "")
            plan.fresh(resume.NOTE_CLI_REFUSED.format(
                error=_ANSI.sub("", said).strip()[:300] or "no such session"))
            self.sink.emit(log_line("agent", "runner", f"Starting a fresh session: {plan.note}"))
            done, parser = self._attempt(adapter, env, budget, plan)
        if (plan and parser.session_id and not plan.resume
                and SESSION_ID.fullmatch(parser.session_id)):
            plan.session_id = parser.session_id  # a CLI that names its sessions itself
        if plan:
            self.stats["session_resumed"] = plan.resume
            if plan.note:
                self.stats["session_note"] = plan.note
            self.session_archive = resume.collect(adapter, plan, self.spec.session_max_bytes,
                                                  env, self.workspace, self.redactor)
        for name, value in parser.stats.items():
            self.stats[f"agent_{name}"] = value
        if done.timed_out:
            raise Failure(exitcodes.TIMEOUT, "agent", "The agent ran past the run's time limit "
                          f"of {self.spec.limits.timeout_seconds}s and was stopped.")
        if done.returncode:
            how = (f"was killed by signal {-done.returncode}" if done.returncode < 0
                   else f"exited with code {done.returncode}")
            detail = f" {parser.error}." if parser.error else _tail(done.tail)
            raise Failure(exitcodes.AGENT, "agent", f"The agent {how}.{detail}")
        if parser.error:
            raise Failure(exitcodes.AGENT, "agent", parser.error)
        self.sink.emit(phase("agent", "succeeded"))
        return parser.summary

    def _session_plan(self, adapter: Adapter, env: Mapping[str, str]) -> resume.Plan | None:
        """This run's session (the earlier one restored where asked), or None where the agent
        keeps none or the bot takes none."""
        if not self.spec.session_max_bytes or not adapter.resumable:
            if self.spec.resume_session:
                self.stats["session_resumed"] = False
                self.stats["session_note"] = resume.NOTE_NOT_RESUMABLE.format(agent=adapter.name)
            return None
        return resume.prepare(adapter, self.spec.resume_session, self.spec.session_max_bytes,
                              self.client, env, self.workspace)

    def _attempt(self, adapter: Adapter, env: Mapping[str, str], budget: LogBudget,
                 plan: resume.Plan | None) -> tuple[procs.ProcessResult, StreamParser]:
        """One start of the agent CLI, to its end."""
        session = None
        if plan:
            root = adapter.session_root(env, self.workspace)
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            session = adapter.session_args(plan.session_id, plan.resume, root)
        invocation = adapter.invocation(self.spec, self.prompt_file, session)
        parser = adapter.parser()
        log.info("starting the %s agent: %s", self.spec.agent, invocation.argv[0])

        def on_line(stream: str, text: str) -> None:
            for event in parser.feed(stream, text):
                budget.emit(event)

        try:
            done = procs.run_streaming(
                invocation.argv, cwd=self.workspace, env=dict(env), on_line=on_line,
                deadline=self.deadline - self.reserve, stdin_path=invocation.stdin_path)
        except OSError as exc:
            raise Failure(exitcodes.AGENT, "agent", f"Could not start the {self.spec.agent} "
                          f"agent ({invocation.argv[0]}): {exc.strerror}.") from None
        for event in parser.finish():
            budget.emit(event)
        return done, parser

    def _changeset(self) -> Any:
        self.sink.emit(phase("changeset", "started"))
        limits = self.spec.limits
        try:
            return collect(self.workspace, self.spec.base_sha, env=self.base_env,
                           max_files=limits.max_changed_files, max_bytes=limits.max_result_bytes)
        except (ChangesetError, OSError) as exc:
            raise Failure(exitcodes.CHANGESET, "changeset", f"The changes were refused: {exc}"
                          ) from None

    def _partial(self) -> Any:
        """The changes so far of an agent that failed, or None where there are none to keep."""
        try:
            changeset = self._changeset()
        except Failure as failure:
            log.warning("the partial changes are not kept: %s", failure.summary)
            return None
        if not changeset.changes:
            return None
        size = len(json.dumps(changeset.changes))
        if size > self.spec.limits.max_result_bytes:
            log.warning("the partial changes are not kept: %d bytes", size)
            return None
        self.sink.emit(phase("changeset", "succeeded", partial=True, **changeset.stats))
        return changeset

    def _upload(self, result: dict[str, Any]) -> int:
        self.sink.emit(phase("upload", "started", result=result["status"]))
        self.sink.flush(FLUSH_SECONDS)  # progress first, so the bot sees it before the end
        self._put_session()
        try:
            self.client.put_result(self.redactor.value(result))
        except CallbackError as exc:
            log.error("the result could not be delivered: %s", exc)
            write_termination_message(self.redactor.text(f"result upload failed: {exc}"))
            return exitcodes.UPLOAD
        files = len(result["changes"])
        log.info("result delivered: %s, %d files", result["status"], files)
        write_termination_message(f"{result['status']}: {files} files changed")
        return exitcodes.OK

    def _put_session(self) -> None:
        """Hand the agent's session to the bot before the result (which ends the run); the
        run's outcome does not depend on it, so a failure is only logged."""
        if self.session_archive is None:
            return
        try:
            self.client.put_session(self.session_archive)
        except CallbackError as exc:
            log.warning("the session could not be delivered: %s", exc)
            return
        log.info("session delivered: %d bytes", len(self.session_archive))

    def fail(self, failure: Failure, partial: Any = None) -> int:
        """Report a failed step: an event, the failed result (with the changes so far, where
        `partial` holds them), the termination message."""
        log.error("%s", failure.summary)
        status = "timed_out" if failure.code == exitcodes.TIMEOUT else "failed"
        self.sink.emit(phase(failure.phase, status, reason=failure.summary))
        self.stats["total_seconds"] = round(time.monotonic() - self.started, 3)
        # The result's status is failed either way; the bot tells a time limit by these.
        self.stats["failed_phase"] = failure.phase
        self.stats["timed_out"] = failure.code == exitcodes.TIMEOUT
        self.sink.flush(FLUSH_SECONDS)
        self._put_session()
        try:
            self.client.put_result(self.redactor.value(failed(failure.summary, self.stats,
                                                              partial)))
        except CallbackError as exc:
            log.error("the failed result could not be delivered either: %s", exc)
        write_termination_message(self.redactor.text(
            f"{exitcodes.describe(failure.code)}: {failure.summary}"))
        return failure.code


def _tail(lines: list[str]) -> str:
    shown = [line for line in lines if line.strip()][-5:]
    return ("\nLast output:\n" + "\n".join(shown)) if shown else ""
