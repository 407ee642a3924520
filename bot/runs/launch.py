"""What launching needs: the executor, the GitHub client, and the RunSpec of a Run row."""

from __future__ import annotations

import re
import shlex
from typing import Any, Protocol

from bot.config.providers import missing_credentials
from bot.config.settings import Settings
from bot.executors.base import Executor, RunSpec, SandboxLimits
from bot.runs.prompt import prompt_for, system_prompt_of

BRANCH_PREFIX = "agentbot/"
SLUG_MAX = 40
# Setup commands get at most this long, and never longer than the whole run.
SETUP_TIMEOUT_SECONDS = 600
# The agents whose CLI takes text for its system prompt (sandbox/agents.py passes it: Claude
# Code's --append-system-prompt, Codex's developer_instructions); the others get a profile's
# system prompt at the end of the prompt.
SYSTEM_PROMPT_AGENTS = ("claude", "codex")

def slugify(text: str, limit: int = SLUG_MAX) -> str:
    """A branch-safe slug: lower-case ASCII letters, digits and single dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-")


def branch_for(run: Any) -> str:
    """The branch the result is published to: the PR's own, or agentbot/<n>-<slug>; a
    variant's own, agentbot/<n>-<slug>-v<k>, even on a PR (the pick moves the PR's)."""
    variant = getattr(run, "variant", None)
    if run.is_pull_request and run.head_ref and variant is None:
        return str(run.head_ref)
    slug = slugify(run.title or "")
    name = f"{BRANCH_PREFIX}{run.number}" + (f"-{slug}" if slug else "")
    return name + (f"-v{int(variant)}" if variant is not None else "")


def callback_url(settings: Settings, run_id: int) -> str:
    """Where the sandbox sends events and the result (AGENTBOT_INTERNAL_URL or loopback)."""
    base = settings.internal_url or f"http://127.0.0.1:{settings.internal_port}"
    return f"{base.rstrip('/')}/internal/runs/{int(run_id)}"


def agent_command(settings: Settings) -> list[str] | None:
    """AGENTBOT_AGENT_COMMAND as argv, split like a shell would but never run through one."""
    if not settings.agent_command:
        return None
    return shlex.split(settings.agent_command)


def gateway_clone_url(settings: Settings, repo_full_name: str) -> str:
    """Where the sandbox fetches the repository: the gateway's git proxy, which adds the read
    token on its way to GitHub (the run row keeps GitHub's own clone URL for the gateway)."""
    return f"{settings.sandbox_gateway_url}/git/{repo_full_name}.git"


class CredentialsMissing(Exception):
    """The gateway has no key for the run's model provider: the run fails before its sandbox
    starts, with the variable to set (the trigger checked too, but the operator's settings
    may have changed while the run was queued, or it came from a retry button)."""


def run_spec(run: Any, settings: Settings, base_sha: str) -> RunSpec:
    """The RunSpec of a run row whose base SHA is known; CredentialsMissing when the agent
    could not reach its model."""
    missing = missing_credentials(settings, run.agent, run.model)
    if missing is not None:
        raise CredentialsMissing(missing)
    timeout = int(run.timeout_seconds)
    return RunSpec(
        run_id=int(run.id),
        repository=run.repo_full_name,
        clone_url=gateway_clone_url(settings, run.repo_full_name),
        base_ref=run.base_ref,
        base_sha=base_sha,
        branch=branch_for(run),
        prompt=prompt_for(run, with_system_prompt=run.agent not in SYSTEM_PROMPT_AGENTS),
        agent=run.agent,
        model=run.model,
        setup=list((run.config or {}).get("setup") or []),
        limits=SandboxLimits(
            timeout_seconds=timeout,
            setup_timeout_seconds=min(timeout, SETUP_TIMEOUT_SECONDS),
            max_changed_files=settings.max_changed_files,
            max_result_bytes=settings.max_result_bytes,
        ),
        callback_url=callback_url(settings, run.id),
        agent_command=agent_command(settings) if run.agent == "command" else None,
        installation_id=int(run.installation_id),
        gateway_url=settings.sandbox_gateway_url,
        proxy_url=settings.sandbox_proxy_url,
        system_prompt=(system_prompt_of(run) or None) if run.agent in SYSTEM_PROMPT_AGENTS
        else None,
        session_max_bytes=settings.session_max_bytes,
        resume_session=bool(((run.config or {}).get("session") or {}).get("resume_from")),
    )


class InstallationClients(Protocol):
    """The part of the GitHub client the scheduler needs (bot.github.client.GitHubApp has it)."""

    def installation(self, installation_id: int) -> Any:
        """A gidgethub client acting as the installation."""


def make_executor(settings: Settings) -> Executor:
    """The executor AGENTBOT_EXECUTOR names (kubernetes in a cluster, else local)."""
    if settings.executor_name == "kubernetes":
        # Imported only here: it is the one module that imports the kubernetes client.
        from bot.executors.kubernetes import KubernetesExecutor

        return KubernetesExecutor.from_settings(settings)
    from bot.executors.local import LocalExecutor, default_state_dir

    return LocalExecutor(state_dir=default_state_dir())
