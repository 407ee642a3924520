"""The executor protocol: start, cancel and watch sandboxes for runs."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class SandboxLimits:
    """Limits the sandbox enforces on itself (the executor enforces the wall clock too)."""

    timeout_seconds: int
    setup_timeout_seconds: int
    max_changed_files: int
    max_result_bytes: int


@dataclass(frozen=True)
class RunSpec:
    """Everything a sandbox needs for one run; serialised as `spec.json` in the run's Secret."""

    run_id: int
    repository: str  # "owner/name"
    clone_url: str  # as GitHub reports it in the repository object
    base_ref: str  # branch the work starts from (the PR's head branch when iterating)
    base_sha: str
    branch: str  # branch the bot will publish to
    prompt: str
    agent: str  # claude | codex | opencode | aider | command
    model: str | None
    setup: list[str]
    limits: SandboxLimits
    callback_url: str  # e.g. http://agentbot-internal:8081/internal/runs/12
    agent_command: list[str] | None = None  # argv of the generic `command` agent
    installation_id: int = 0
    # The gateway as the sandbox reaches it: model APIs and git over HTTP, and its egress
    # proxy. The clone URL points at the gateway too; the sandbox reaches nothing else.
    gateway_url: str | None = None
    proxy_url: str | None = None
    # A profile's system prompt, for an agent CLI that takes one (see SYSTEM_PROMPT_AGENTS in
    # bot/runs/launch.py); for the others it is part of `prompt`.
    system_prompt: str | None = None
    # The agent's session is uploaded at the end (at most this many bytes packed; 0: not),
    # and with `resume_session` the earlier run's comes from the internal API first.
    session_max_bytes: int = 0
    resume_session: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SandboxSecrets:
    """The run's secret files, mounted at /var/run/agentbot/ beside spec.json: two per-run
    credentials that stop working when the run ends, and nothing else."""

    gateway_token: str = field(repr=False)
    callback_token: str = field(repr=False)


class SandboxPhase(enum.StrEnum):
    """What an executor can observe of a sandbox from outside."""

    PENDING = "pending"  # accepted, not yet running (pod scheduling, image pull)
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # the process exited 0: the result was uploaded
    FAILED = "failed"
    TIMED_OUT = "timed_out"  # the executor's wall clock (activeDeadlineSeconds) ran out
    GONE = "gone"  # the Job or process no longer exists


@dataclass(frozen=True)
class SandboxStatus:
    """One observed change of a run's sandbox."""

    run_id: int
    phase: SandboxPhase
    reason: str | None = None  # e.g. "ImagePullBackOff: ..." or "exit code 3 (setup failed)"
    exit_code: int | None = None


class Executor(Protocol):
    """Runs sandboxes. Every method is idempotent: calling it twice does the work once."""

    name: str

    async def start(self, spec: RunSpec, secrets: SandboxSecrets) -> None:
        """Create the sandbox for `spec.run_id`; an existing one counts as started."""

    async def cancel(self, run_id: int) -> None:
        """Stop and remove the run's sandbox; a missing one counts as cancelled."""

    async def reconcile(self, active_run_ids: set[int]) -> list[SandboxStatus]:
        """After a restart: adopt sandboxes of active runs, report the ones that vanished."""

    def statuses(self) -> AsyncIterator[SandboxStatus]:
        """Status changes of every sandbox this executor knows, for as long as it runs."""

    async def close(self) -> None:
        """Stop watching and release resources; running sandboxes are left running."""
