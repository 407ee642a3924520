"""Process configuration from the environment (and `.env`), read once at start."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.config.budget import Budget, PriceTable, PriceTableError, parse_budget

# The agents a run can use; sandbox/agents.py has an adapter for each.
AGENTS = ("claude", "codex", "opencode", "aider", "command")
# A model is passed to the agent CLI as one argv item; keep it to the characters names use.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+\[\]-]{0,99}")

_DURATION = re.compile(r"^\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*$")


def parse_duration(value: str | int | float) -> int:
    """Seconds from `90`, `90s`, `20m`, `1h` or `1h30m`; raises ValueError otherwise."""
    if isinstance(value, int | float):
        seconds = int(value)
    else:
        match = _DURATION.match(value)
        if not value.strip() or match is None or not any(match.groups()):
            raise ValueError(f"{value!r} is not a duration like 90s, 20m or 1h30m")
        hours, minutes, secs = (int(g) if g else 0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def parse_long_duration(value: str | int | float) -> int:
    """Seconds from what parse_duration takes, or whole days like `7d`."""
    if isinstance(value, str) and value.strip().endswith("d"):
        days = value.strip()[:-1]
        if not (days.isascii() and days.isdigit()) or int(days) <= 0:
            raise ValueError(f"{value!r} is not a duration like 7d, 12h or 30m")
        return int(days) * 86400
    return parse_duration(value)


def format_duration(seconds: int) -> str:
    """The short form of a duration in seconds: `1h30m`, `20m`, `45s`."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    text += f"{secs}s" if secs or not text else ""
    return text


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _has_kubeconfig() -> bool:
    if os.environ.get("KUBECONFIG"):
        return True
    return Path("~/.kube/config").expanduser().is_file()


class Settings(BaseSettings):
    """Every setting agentbot reads, by the environment variable that sets it."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # The descriptions are the README's table of settings (settings_table_markdown).

    # github
    github_app_id: int | None = Field(
        None, alias="GITHUB_APP_ID", description="The GitHub App's numeric id.")
    github_private_key: str | None = Field(
        None, alias="GITHUB_PRIVATE_KEY", repr=False,
        description="The App's private key as PEM text (newlines may be written as `\\n`).")
    github_private_key_path: Path | None = Field(
        None, alias="GITHUB_PRIVATE_KEY_PATH",
        description="A file that holds the App's private key, instead of the text.")
    github_webhook_secret: str | None = Field(
        None, alias="GITHUB_WEBHOOK_SECRET", repr=False,
        description="The App's webhook secret; unsigned deliveries are always refused.")
    github_api_url: str = Field(
        "https://api.github.com", alias="GITHUB_API_URL",
        description="GitHub's REST API; GitHub Enterprise Server's ends in `/api/v3`.")
    github_client_id: str | None = Field(
        None, alias="GITHUB_CLIENT_ID",
        description="The App's OAuth client id: with the secret, turns on sign-in and the run "
                    "pages (`/runs`).")
    github_client_secret: str | None = Field(
        None, alias="GITHUB_CLIENT_SECRET", repr=False,
        description="The App's OAuth client secret (`agentbot setup` stores both).")

    # database
    database_url: str = Field(
        "sqlite+aiosqlite:///agentbot.db", alias="AGENTBOT_DATABASE_URL",
        description="SQLite for one replica, `postgresql+asyncpg://...` for several.")

    # http
    host: str = Field(
        "0.0.0.0", alias="AGENTBOT_HOST",  # noqa: S104 - a server's public port
        description="The address the ports listen on; with the local executor the internal "
                    "port and the gateway listen on loopback only, unless a URL of theirs is "
                    "set.")
    port: int = Field(
        8080, alias="AGENTBOT_PORT",
        description="The public port: webhooks, health checks, the setup page.")
    internal_port: int = Field(
        8081, alias="AGENTBOT_INTERNAL_PORT",
        description="The internal port: sandbox callbacks and `/metrics`.")
    public_url: str | None = Field(
        None, alias="AGENTBOT_PUBLIC_URL",
        description="How GitHub and people reach the public port.")
    internal_url: str | None = Field(
        None, alias="AGENTBOT_INTERNAL_URL",
        description="How sandboxes reach the internal port "
                    "(unset: `http://127.0.0.1:<internal port>`).")
    max_connections: int = Field(
        1000, alias="AGENTBOT_MAX_CONNECTIONS", ge=1,
        description="How many connections the public port, and the internal port, each keep "
                    "open at once; past it 16 more are let in for health checks only and the "
                    "rest are refused at once. Lowered at start to stay below the file limit.")
    header_timeout: int = Field(
        10, alias="AGENTBOT_HEADER_TIMEOUT",
        description="How long a client of the public or internal port has to send a "
                    "request's head, from connecting or from the previous answer, like `10s`; "
                    "a connection still without one is cut.")

    # gateway: the sandbox's model provider, git remote and only way out
    gateway_port: int = Field(
        8082, alias="AGENTBOT_GATEWAY_PORT",
        description="The gateway's HTTP port: the model APIs and git, for sandboxes.")
    gateway_proxy_port: int = Field(
        8083, alias="AGENTBOT_GATEWAY_PROXY_PORT",
        description="The gateway's egress proxy port (HTTP CONNECT), for sandboxes.")
    gateway_url: str | None = Field(
        None, alias="AGENTBOT_GATEWAY_URL",
        description="How sandboxes reach the gateway's HTTP port "
                    "(unset: `http://127.0.0.1:<gateway port>`).")
    gateway_proxy_url: str | None = Field(
        None, alias="AGENTBOT_GATEWAY_PROXY_URL",
        description="How sandboxes reach the gateway's proxy port "
                    "(unset: the gateway URL's host, on the proxy port).")
    egress_allow: str = Field(
        "", alias="AGENTBOT_EGRESS_ALLOW",
        description="Hosts every sandbox may reach besides the package registries, "
                    "comma-separated: `example.com`, `*.example.com`, `example.com:8443`.")
    egress_repo_allow: str = Field(
        "", alias="AGENTBOT_EGRESS_REPO_ALLOW",
        description="Hosts a repository may add for its own runs with `network.allow`.")
    anthropic_api_key: str | None = Field(
        None, alias="ANTHROPIC_API_KEY", repr=False,
        description="The operator's Anthropic key; only the gateway holds it.")
    claude_code_oauth_token: str | None = Field(
        None, alias="CLAUDE_CODE_OAUTH_TOKEN", repr=False,
        description="A Claude subscription's token (`claude setup-token`), used for Anthropic "
                    "requests when `ANTHROPIC_API_KEY` is unset; only the gateway holds it.")
    openai_api_key: str | None = Field(
        None, alias="OPENAI_API_KEY", validation_alias=AliasChoices("OPENAI_API_KEY",
                                                                    "CODEX_API_KEY"),
        repr=False,
        description="The operator's OpenAI key (`CODEX_API_KEY` is read when this is unset); "
                    "only the gateway holds it.")
    anthropic_url: str = Field(
        "https://api.anthropic.com", alias="AGENTBOT_ANTHROPIC_URL",
        validation_alias=AliasChoices("AGENTBOT_ANTHROPIC_URL", "ANTHROPIC_BASE_URL"),
        description="Where the gateway sends Anthropic requests (`ANTHROPIC_BASE_URL` is read "
                    "when this is unset).")
    openai_url: str = Field(
        "https://api.openai.com", alias="AGENTBOT_OPENAI_URL",
        validation_alias=AliasChoices("AGENTBOT_OPENAI_URL", "OPENAI_BASE_URL"),
        description="Where the gateway sends OpenAI requests (`OPENAI_BASE_URL` is read when "
                    "this is unset; a trailing `/v1` is dropped, as request paths carry it).")
    model_providers: str | None = Field(
        None, alias="AGENTBOT_MODEL_PROVIDERS",
        description="With a gateway of its own (the chart's), the providers it has a key for, "
                    "comma-separated (`anthropic`, `openai`): runs of an agent whose provider "
                    "is missing are refused when asked for. Unset: the keys in this "
                    "process's environment decide, and with none the check is left to the "
                    "gateway.")

    # executor and sandbox
    executor: Literal["local", "kubernetes"] | None = Field(
        None, alias="AGENTBOT_EXECUTOR",
        description="`local` or `kubernetes` (unset: `kubernetes` in a cluster or with a "
                    "kubeconfig, else `local`).")
    namespace: str = Field(
        "default", alias="AGENTBOT_NAMESPACE",
        description="The namespace of sandbox Jobs and Secrets.")
    sandbox_image: str = Field(
        "ghcr.io/agentbot/agentbot-sandbox:0.1.0", alias="AGENTBOT_SANDBOX_IMAGE",
        description="The sandbox's image, built from `sandbox/Dockerfile`.")
    runtime_class: str | None = Field(
        None, alias="AGENTBOT_RUNTIME_CLASS",
        description="The RuntimeClass of sandbox pods (the chart sets gVisor's).")
    job_ttl_seconds: int = Field(
        3600, alias="AGENTBOT_JOB_TTL_SECONDS", ge=0,
        description="How long Kubernetes keeps a finished Job, in seconds.")
    sandbox_cpu: str = Field(
        "2", alias="AGENTBOT_SANDBOX_CPU",
        description="CPU of a sandbox pod (request and limit).")
    sandbox_memory: str = Field(
        "4Gi", alias="AGENTBOT_SANDBOX_MEMORY",
        description="Memory of a sandbox pod (request and limit).")
    sandbox_ephemeral_storage: str = Field(
        "10Gi", alias="AGENTBOT_SANDBOX_EPHEMERAL_STORAGE",
        description="Ephemeral storage of a sandbox pod, its workspace included.")
    local_state_dir: Path = Field(
        Path(".agentbot/runs"), alias="AGENTBOT_LOCAL_STATE_DIR",
        description="Where the local executor keeps its runs, to adopt them after a restart.")
    default_agent: str = Field(
        "claude", alias="AGENTBOT_DEFAULT_AGENT",
        description="The agent of a run that names none: " + ", ".join(
            f"`{agent}`" for agent in AGENTS) + ".")
    agent_command: str | None = Field(
        None, alias="AGENTBOT_AGENT_COMMAND",
        description="The argv of the `command` agent; `{prompt_file}` becomes the path of "
                    "the prompt file.")

    # limits
    max_concurrent_runs: int = Field(
        10, alias="AGENTBOT_MAX_CONCURRENT_RUNS", ge=1,
        description="How many runs may be active at once, in all.")
    max_runs_per_installation: int = Field(
        5, alias="AGENTBOT_MAX_RUNS_PER_INSTALLATION", ge=1,
        description="How many runs of one installation may be active at once.")
    max_variants: int = Field(
        5, alias="AGENTBOT_MAX_VARIANTS", ge=1, le=20,
        description="The most variants one request may ask for (`--variants N`, or "
                    "`variants` in a profile); each is a run of its own, within the limits "
                    "above.")
    max_parallel_launches: int = Field(
        16, alias="AGENTBOT_MAX_PARALLEL_LAUNCHES", ge=1,
        description="How many sandboxes one process starts at the same time (each start "
                    "waits on the executor and GitHub).")
    github_writes_per_minute: int = Field(
        72, alias="AGENTBOT_GITHUB_WRITES_PER_MINUTE", ge=1,
        description="Content-creating GitHub requests one installation sends per minute, at "
                    "most (GitHub allows 80); the rest wait, by priority.")
    github_writes_per_hour: int = Field(
        480, alias="AGENTBOT_GITHUB_WRITES_PER_HOUR", ge=1,
        description="Content-creating GitHub requests one installation sends per hour, at "
                    "most (GitHub allows 500).")
    run_timeout: int = Field(
        1800, alias="AGENTBOT_RUN_TIMEOUT",
        description="The longest a run may take, like `30m`; a repository may ask for less.")
    max_changed_files: int = Field(
        100, alias="AGENTBOT_MAX_CHANGED_FILES", ge=1,
        description="The most files a result may change; a repository may ask for fewer.")
    max_result_bytes: int = Field(
        20 * 1024 * 1024, alias="AGENTBOT_MAX_RESULT_BYTES", ge=1,
        description="The largest result a sandbox may upload, in bytes.")
    max_run_budget: str = Field(
        "", alias="AGENTBOT_MAX_RUN_BUDGET",
        description="The most one run may spend on its model, like `$5`, `2M tokens` or "
                    "`$5, 2M tokens`; also the budget of a run that names none.")
    user_daily_runs: int | None = Field(
        None, alias="AGENTBOT_USER_DAILY_RUNS", ge=1,
        description="How many runs one person may start a day (UTC).")
    user_daily_budget: str = Field(
        "", alias="AGENTBOT_USER_DAILY_BUDGET",
        description="What the runs one person started may spend a day (UTC), like `$20`.")
    installation_daily_budget: str = Field(
        "", alias="AGENTBOT_INSTALLATION_DAILY_BUDGET",
        description="What the runs of one installation may spend a day (UTC), like `$100`.")
    price_table: Path | None = Field(
        None, alias="AGENTBOT_PRICE_TABLE",
        description="A YAML file of model prices that replaces and adds to the built-in "
                    "table (docs/budgets.md).")
    trigger_label: str = Field(
        "agent", alias="AGENTBOT_TRIGGER_LABEL", min_length=1,
        description="The label that starts a run; a repository may name another.")

    # intake
    redeliver_interval: int = Field(
        300, alias="AGENTBOT_REDELIVER_INTERVAL",
        description="How often one replica asks GitHub for the App's failed deliveries of "
                    "the last 3 days and has them sent again, like `5m` (also at start-up); "
                    "`0` turns it off.")

    # run pages
    event_retention: int = Field(
        30 * 86400, alias="AGENTBOT_EVENT_RETENTION",
        description="How long a finished run's events (its transcript) are kept, like `30d` "
                    "or `12h`; a background pass deletes older ones.")

    # agent sessions
    session_max_bytes: int = Field(
        20 * 1024 * 1024, alias="AGENTBOT_SESSION_MAX_BYTES", ge=0,
        description="The largest agent session (compressed) a sandbox may hand back for the "
                    "next run of its pull request or issue to resume; `0` keeps none, and "
                    "every run starts fresh. Sessions are kept as long as events "
                    "(`AGENTBOT_EVENT_RETENTION`).")
    session_dir: Path | None = Field(
        None, alias="AGENTBOT_SESSION_DIR",
        description="A directory for the stored agent sessions (one file a run); unset, "
                    "they are kept in the database.")

    # approvals
    approval_ttl: int = Field(
        7 * 86400, alias="AGENTBOT_APPROVAL_TTL",
        description="How long a run asked for by someone without write access waits for a "
                    "maintainer's approval before it expires, like `7d` or `12h`.")

    # logging
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", alias="AGENTBOT_LOG_LEVEL", description="`debug`, `info`, `warning` or `error`.")
    log_format: Literal["json", "text"] = Field(
        "json", alias="AGENTBOT_LOG_FORMAT", description="`json` (one object a line) or `text`.")

    @field_validator("run_timeout", "header_timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> int:
        if isinstance(value, str | int | float):
            return parse_duration(value)
        raise ValueError("expected a duration like 30m")

    @field_validator("event_retention", "approval_ttl", mode="before")
    @classmethod
    def _long_duration(cls, value: object) -> int:
        if isinstance(value, str | int | float):
            return parse_long_duration(value)
        raise ValueError("expected a duration like 7d or 12h")

    @field_validator("redeliver_interval", mode="before")
    @classmethod
    def _interval_or_off(cls, value: object) -> int:
        if isinstance(value, str) and value.strip() in ("0", "off", ""):
            return 0
        if value == 0:
            return 0
        if isinstance(value, str | int | float):
            return parse_duration(value)
        raise ValueError("expected a duration like 5m, or 0 for off")

    @field_validator("max_run_budget", "user_daily_budget", "installation_daily_budget")
    @classmethod
    def _budget(cls, value: str) -> str:
        if value.strip():
            parse_budget(value)  # its ValueError names what is wrong
        return value.strip()

    @field_validator("user_daily_runs", mode="before")
    @classmethod
    def _blank_count(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", "log_format", "default_agent", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("openai_url")
    @classmethod
    def _without_version(cls, value: str) -> str:
        # OPENAI_BASE_URL is written with /v1 by convention; the agents' paths bring their own.
        return value.rstrip("/").removesuffix("/v1")

    @field_validator("model_providers")
    @classmethod
    def _known_providers(cls, value: str | None) -> str | None:
        if value is None:
            return None
        unknown = {name.strip() for name in value.lower().split(",")} - {"anthropic", "openai", ""}
        if unknown:
            raise ValueError(f"unknown provider {sorted(unknown)[0]!r}; the providers are "
                             "anthropic, openai")
        return value.lower()

    @field_validator("default_agent")
    @classmethod
    def _known_agent(cls, value: str) -> str:
        if value not in AGENTS:
            raise ValueError(f"the agents are {', '.join(AGENTS)}")
        return value

    @field_validator("executor", "runtime_class", "public_url", "internal_url", "gateway_url",
                     "gateway_proxy_url", "anthropic_api_key", "openai_api_key",
                     "claude_code_oauth_token", "model_providers", "agent_command",
                     "price_table", "github_client_id", "github_client_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    # derived

    @property
    def setup_mode(self) -> bool:
        """True when no App credential is configured at all: serve the setup page."""
        return (
            self.github_app_id is None
            and not self.github_private_key
            and self.github_private_key_path is None
            and not self.github_webhook_secret
        )

    @property
    def sign_in(self) -> bool:
        """True when the App's OAuth client is configured: sign-in and the run pages are on."""
        return bool(self.github_client_id and self.github_client_secret)

    @property
    def github_web_url(self) -> str:
        """GitHub's web address for GITHUB_API_URL (where people sign in): github.com for
        api.github.com, the host for GitHub Enterprise Server's `/api/v3`, else the URL itself
        (a test double serving both)."""
        parts = urlsplit(self.github_api_url.rstrip("/"))
        if parts.path.rstrip("/") == "/api/v3":
            return f"{parts.scheme}://{parts.netloc}"
        if parts.netloc.startswith("api.") and parts.path in ("", "/"):
            return f"{parts.scheme}://{parts.netloc.removeprefix('api.')}"
        return self.github_api_url.rstrip("/")

    @property
    def executor_name(self) -> str:
        if self.executor:
            return self.executor
        return "kubernetes" if _in_cluster() or _has_kubeconfig() else "local"

    @property
    def sandbox_listen_host(self) -> str:
        """Where the ports only sandboxes use (internal, gateway, its proxy) listen: loopback
        with the local executor, whose sandboxes run on this machine, unless a URL of theirs
        says they are reached from elsewhere; else AGENTBOT_HOST."""
        if self.executor_name == "local" and not (
                self.internal_url or self.gateway_url or self.gateway_proxy_url):
            return "127.0.0.1"
        return self.host

    @property
    def sandbox_gateway_url(self) -> str:
        """The gateway's HTTP base as sandboxes reach it."""
        return (self.gateway_url or f"http://127.0.0.1:{self.gateway_port}").rstrip("/")

    @property
    def sandbox_proxy_url(self) -> str:
        """The gateway's egress proxy as sandboxes reach it."""
        if self.gateway_proxy_url:
            return self.gateway_proxy_url.rstrip("/")
        host = urlsplit(self.sandbox_gateway_url).hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.gateway_proxy_port}"

    @property
    def egress_hosts(self) -> tuple[str, ...]:
        """AGENTBOT_EGRESS_ALLOW as host patterns."""
        return _host_list(self.egress_allow)

    @property
    def egress_repo_hosts(self) -> tuple[str, ...]:
        """AGENTBOT_EGRESS_REPO_ALLOW as host patterns."""
        return _host_list(self.egress_repo_allow)

    @property
    def run_budget_cap(self) -> Budget:
        """AGENTBOT_MAX_RUN_BUDGET (no limit when unset)."""
        return parse_budget(self.max_run_budget) if self.max_run_budget else Budget()

    @property
    def user_budget(self) -> Budget:
        return parse_budget(self.user_daily_budget) if self.user_daily_budget else Budget()

    @property
    def installation_budget(self) -> Budget:
        return (parse_budget(self.installation_daily_budget) if self.installation_daily_budget
                else Budget())

    def prices(self) -> PriceTable:
        """The built-in price table with AGENTBOT_PRICE_TABLE over it."""
        return _prices(self.price_table)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def private_key_pem(self) -> str | None:
        """The App's private key text, from the variable or the file."""
        if self.github_private_key:
            # Secrets stores and .env files often flatten newlines into literal "\n".
            return self.github_private_key.replace("\\n", "\n").strip() + "\n"
        if self.github_private_key_path is not None:
            return self.github_private_key_path.read_text()
        return None

    def app_problems(self) -> list[str]:
        """One line per missing or malformed App setting; empty when the App is usable."""
        problems: list[str] = []
        if self.github_app_id is None:
            problems.append("GITHUB_APP_ID is not set (the App's numeric id)")
        elif self.github_app_id <= 0:
            problems.append("GITHUB_APP_ID must be a positive integer")
        if not self.github_webhook_secret:
            problems.append("GITHUB_WEBHOOK_SECRET is not set; webhooks are never accepted "
                            "unsigned")
        if bool(self.github_client_id) != bool(self.github_client_secret):
            missing = "GITHUB_CLIENT_SECRET" if self.github_client_id else "GITHUB_CLIENT_ID"
            problems.append(f"{missing} is not set; sign-in needs the App's OAuth client id "
                            "and secret both")
        if not self.github_private_key and self.github_private_key_path is None:
            problems.append("GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH is not set "
                            "(the App's PEM private key)")
        else:
            name = "GITHUB_PRIVATE_KEY" if self.github_private_key else "GITHUB_PRIVATE_KEY_PATH"
            try:
                pem = self.private_key_pem() or ""
            except OSError as exc:
                problems.append(f"{name}: cannot read {self.github_private_key_path}: "
                                f"{exc.strerror}")
            else:
                problem = _pem_problem(pem)
                if problem:
                    problems.append(f"{name}: {problem}")
        return problems


@functools.lru_cache(maxsize=8)
def _prices(path: Path | None) -> PriceTable:
    return PriceTable.load(path)


def _host_list(text: str) -> tuple[str, ...]:
    return tuple(h for h in re.split(r"[\s,]+", text.strip()) if h)


def _pem_problem(pem: str) -> str | None:
    # Imported here: cryptography is heavy and only start-up needs it.
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        # The message of cryptography's error never includes key material, but keep ours fixed.
        return "is not a PEM private key that parses (expected the .pem file GitHub gave you)"
    if not isinstance(key, RSAPrivateKey):
        return "is not an RSA key (GitHub Apps sign with RS256)"
    return None


def load_settings(**overrides: object) -> tuple[Settings | None, list[str]]:
    """Settings and a list of problems; problems name the variable, never its value."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            name = ".".join(str(p) for p in error["loc"]) or "settings"
            problems.append(f"{name}: {error['msg']}")
        return None, problems
    problems = []
    try:
        settings.prices()
    except PriceTableError as exc:
        problems.append(f"AGENTBOT_PRICE_TABLE: {exc}")
    if settings.setup_mode:
        return settings, problems
    return settings, problems + settings.app_problems()


def settings_table_markdown() -> str:
    """A Markdown table of every setting (for the README), from the fields above."""
    rows = ["| Variable | Default | What it sets |", "| --- | --- | --- |"]
    for field in Settings.model_fields.values():
        default = field.default
        if default is None or default == "":
            shown = ""
        elif field.alias == "AGENTBOT_APPROVAL_TTL":
            shown = f"`{default // 86400}d`"
        elif field.alias in ("AGENTBOT_RUN_TIMEOUT", "AGENTBOT_REDELIVER_INTERVAL",
                             "AGENTBOT_HEADER_TIMEOUT"):
            shown = f"`{format_duration(default)}`"
        elif field.alias == "AGENTBOT_EVENT_RETENTION":
            shown = f"`{default // 86400}d`"
        else:
            shown = f"`{default}`"
        rows.append(f"| `{field.alias}` | {shown} | {field.description} |")
    return "\n".join(rows)
