"""Reading and checking the run's inputs: spec.json and the two token files."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_SPEC_DIR = "/var/run/agentbot"
DEFAULT_WORKSPACE = "/workspace"
SPEC_FILE = "spec.json"
GATEWAY_TOKEN_FILE = "gateway-token"  # noqa: S105 - a file name, not a token
CALLBACK_TOKEN_FILE = "callback-token"  # noqa: S105 - a file name, not a token
AGENTS = ("claude", "codex", "opencode", "aider", "command")


class SpecError(Exception):
    """The spec or a token file is missing or malformed; the message never holds a token."""


@dataclass(frozen=True)
class Limits:
    """The limits the runner enforces on itself."""

    timeout_seconds: int
    setup_timeout_seconds: int
    max_changed_files: int
    max_result_bytes: int


@dataclass(frozen=True)
class Spec:
    """The sandbox's view of the bot's RunSpec (same field names as `spec.json`)."""

    run_id: int
    repository: str
    clone_url: str
    base_ref: str
    base_sha: str
    branch: str
    prompt: str
    agent: str
    model: str | None
    setup: list[str]
    limits: Limits
    callback_url: str
    agent_command: list[str] | None = None
    installation_id: int = 0
    # The gateway: its HTTP base (model APIs, git) and its egress proxy. Without them the
    # agent gets no provider configuration and no proxy (a `command` agent in tests).
    gateway_url: str | None = None
    proxy_url: str | None = None
    system_prompt: str | None = None  # added to the CLI's own system prompt (a profile's)
    # The agent's session goes back to the bot (at most this many bytes packed; 0: it does
    # not), and with `resume_session` the earlier run's session comes from it first.
    session_max_bytes: int = 0
    resume_session: bool = False


@dataclass(frozen=True)
class Secrets:
    """The run's two credentials, each good for this run only while it is active; kept out
    of repr so they never reach a log by accident."""

    gateway_token: str = field(repr=False)  # git, the model APIs and egress, via the gateway
    callback_token: str = field(repr=False)  # this run's events and result


def _require(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    # bool is an int subclass; a `true` run id is a mistake, not a number.
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise SpecError(f"spec.json: field {name!r} is missing or not a {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _positive(data: dict[str, Any], name: str) -> int:
    value = _require(data, name, int)
    if value <= 0:
        raise SpecError(f"spec.json: limits.{name} must be positive")
    return int(value)


def parse_spec(data: Any) -> Spec:
    """A checked Spec from the decoded `spec.json`; raises SpecError naming the bad field."""
    if not isinstance(data, dict):
        raise SpecError("spec.json: not a JSON object")
    limits_data = _require(data, "limits", dict)
    limits = Limits(
        timeout_seconds=_positive(limits_data, "timeout_seconds"),
        setup_timeout_seconds=_positive(limits_data, "setup_timeout_seconds"),
        max_changed_files=_positive(limits_data, "max_changed_files"),
        max_result_bytes=_positive(limits_data, "max_result_bytes"),
    )
    setup = _require(data, "setup", list)
    if not all(isinstance(command, str) for command in setup):
        raise SpecError("spec.json: field 'setup' must be a list of strings")
    agent = _require(data, "agent", str)
    if agent not in AGENTS:
        raise SpecError(f"spec.json: unknown agent {agent!r} (one of {', '.join(AGENTS)})")
    agent_command = data.get("agent_command")
    if agent_command is not None and not (
        isinstance(agent_command, list) and agent_command
        and all(isinstance(arg, str) for arg in agent_command)
    ):
        raise SpecError("spec.json: field 'agent_command' must be a non-empty list of strings")
    if agent == "command" and not agent_command:
        raise SpecError("spec.json: agent 'command' needs 'agent_command'")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise SpecError("spec.json: field 'model' must be a string or null")
    system_prompt = data.get("system_prompt")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise SpecError("spec.json: field 'system_prompt' must be a string or null")
    session_max_bytes = data.get("session_max_bytes", 0)
    if not isinstance(session_max_bytes, int) or isinstance(session_max_bytes, bool) \
            or session_max_bytes < 0:
        raise SpecError("spec.json: field 'session_max_bytes' must be a whole number >= 0")
    resume_session = data.get("resume_session", False)
    if not isinstance(resume_session, bool):
        raise SpecError("spec.json: field 'resume_session' must be true or false")
    spec = Spec(
        run_id=_require(data, "run_id", int),
        repository=_require(data, "repository", str),
        clone_url=_require(data, "clone_url", str),
        base_ref=_require(data, "base_ref", str),
        base_sha=_require(data, "base_sha", str),
        branch=_require(data, "branch", str),
        prompt=_require(data, "prompt", str),
        agent=agent,
        model=model or None,
        setup=list(setup),
        limits=limits,
        callback_url=_require(data, "callback_url", str).rstrip("/"),
        agent_command=list(agent_command) if agent_command else None,
        installation_id=int(data.get("installation_id") or 0),
        gateway_url=_optional_url(data, "gateway_url"),
        proxy_url=_optional_url(data, "proxy_url"),
        system_prompt=system_prompt or None,
        session_max_bytes=session_max_bytes,
        resume_session=resume_session,
    )
    _check_urls(spec)
    sha = spec.base_sha
    if len(sha) not in (40, 64) or any(c not in "0123456789abcdef" for c in sha):
        raise SpecError("spec.json: 'base_sha' must be a full lowercase hex commit id")
    return spec


def _optional_url(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise SpecError(f"spec.json: field {name!r} must be a string or null")
    return value.rstrip("/") if value else None


def _check_urls(spec: Spec) -> None:
    urls = [("clone_url", spec.clone_url), ("callback_url", spec.callback_url),
            ("gateway_url", spec.gateway_url), ("proxy_url", spec.proxy_url)]
    for name, url in urls:
        if url is None:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SpecError(f"spec.json: {name!r} must be an http(s) URL")
        # A credential in a URL would end up in git's config, logs and error messages.
        if parts.username or parts.password:
            raise SpecError(f"spec.json: {name!r} must not carry credentials")


def _read_token(directory: Path, name: str) -> str:
    try:
        token = (directory / name).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SpecError(f"cannot read {directory / name}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{directory / name} is not UTF-8 text") from None
    if not token or any(c.isspace() for c in token):
        raise SpecError(f"{directory / name} is empty or not a single token")
    return token


def load(directory: Path) -> tuple[Spec, Secrets]:
    """Read spec.json and the token files from the spec directory."""
    try:
        raw = (directory / SPEC_FILE).read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read {directory / SPEC_FILE}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise SpecError(f"spec.json is not valid JSON: {exc}") from None
    spec = parse_spec(data)
    secrets = Secrets(
        gateway_token=_read_token(directory, GATEWAY_TOKEN_FILE),
        callback_token=_read_token(directory, CALLBACK_TOKEN_FILE),
    )
    return spec, secrets


def forget_token_files(directory: Path) -> None:
    """Remove the token files where the mount allows it, so the agent cannot read them later.

    In a Job the Secret volume is read-only and this does nothing; there both credentials are
    bound to this run and stop working when it ends.
    """
    for name in (GATEWAY_TOKEN_FILE, CALLBACK_TOKEN_FILE):
        with contextlib.suppress(OSError):
            (directory / name).unlink()


def spec_dir_from_env() -> Path:
    """Where the spec and token files are (`AGENTBOT_SPEC_DIR`)."""
    return Path(os.environ.get("AGENTBOT_SPEC_DIR") or DEFAULT_SPEC_DIR)


def workspace_from_env() -> Path:
    """Where the repository is checked out (`AGENTBOT_WORKSPACE`)."""
    return Path(os.environ.get("AGENTBOT_WORKSPACE") or DEFAULT_WORKSPACE)
