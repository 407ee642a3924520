"""One adapter per agent CLI: how to invoke it, and which parser reads its output."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sandbox.gateway import provider_env
from sandbox.parsers.base import StreamParser
from sandbox.parsers.claude import ClaudeParser
from sandbox.parsers.codex import CodexParser
from sandbox.parsers.opencode import OpenCodeParser
from sandbox.parsers.text import AiderParser, CommandParser
from sandbox.spec import Spec

PROMPT_PLACEHOLDER = "{prompt_file}"


@dataclass(frozen=True)
class Invocation:
    """What to execute: argv (never through a shell) and the file to feed on stdin, if any."""

    argv: list[str]
    stdin_path: Path | None


class Adapter:
    """The base adapter: subclasses set `name`, build argv and pick a parser."""

    name = ""
    # Files the CLI drops in the checkout that are not part of the work (.git/info/exclude).
    excludes: tuple[str, ...] = ()

    def invocation(self, spec: Spec, prompt_file: Path,
                   session: list[str] | None = None) -> Invocation:
        """The command line for this run (with `session`'s options, from session_args); the
        prompt travels as a file or on stdin."""
        raise NotImplementedError

    def parser(self) -> StreamParser:
        """A fresh parser for this CLI's output."""
        raise NotImplementedError

    def environment(self, spec: Spec) -> dict[str, str]:
        """Variables this CLI needs on top of the run's environment."""
        return {}

    def refusal(self, uid: int, env: Mapping[str, str]) -> str | None:
        """Why the CLI would refuse to start as `uid` with `env`, said before it runs (its
        own message is one line among its output); None when it will start."""
        return None

    # Whether the pinned CLI can continue an earlier session headless (see session_args).
    resumable = False

    def session_args(self, session_id: str, resume: bool, root: Path) -> list[str]:
        """Options that start the session `session_id`, or continue it when `resume`
        (`root` is its session_root)."""
        return []

    def session_root(self, env: Mapping[str, str], workspace: Path) -> Path:
        """The directory where the CLI keeps the sessions of a run in `workspace`."""
        raise NotImplementedError

    def session_names(self, root: Path, session_id: str) -> list[str]:
        """The files and directories of one session, relative to `session_root` (`root`)."""
        return []

    def resume_refused(self, text: str) -> bool:
        """Whether the CLI's error `text` says it could not find or load the session."""
        return False

    def session_export(self, session_id: str) -> list[str] | None:
        """For a CLI that keeps sessions where files cannot carry them (a database): the
        command that prints the session (kept as the file `<id>.json`), else None."""
        return None

    def session_import(self, path: Path) -> list[str] | None:
        """The command that loads an exported session from `path` before the agent starts."""
        return None


def _model(flag: str, spec: Spec) -> list[str]:
    return [flag, spec.model] if spec.model else []


# Claude Code's tools for a headless run. Named, because with its default set (2.1.x) the plan
# tools are missing in -p mode for current models, and the rest sit behind ToolSearch; a list
# offers each directly. Left out: scheduling, worktrees, messaging and review-UI tools, which
# mean nothing in a one-shot sandbox.
CLAUDE_TOOLS = ("Agent", "Bash", "Edit", "Glob", "Grep", "NotebookEdit", "Read", "Skill",
                "TaskCreate", "TaskGet", "TaskList", "TaskUpdate", "WebFetch", "Write")
CLAUDE_ROOT_REFUSAL = (
    "Claude Code refuses to run as root with --dangerously-skip-permissions, which a headless "
    "run needs, and the sandbox runs as uid 0 here. Run it as an unprivileged user: the "
    "sandbox image runs as uid 10001; with the local executor, start the bot as a user other "
    "than root (or, inside a container that is itself the boundary, set IS_SANDBOX=1).")


class ClaudeAdapter(Adapter):
    """Claude Code in print mode, streaming JSON; the prompt on stdin."""

    name = "claude"

    def invocation(self, spec: Spec, prompt_file: Path,
                   session: list[str] | None = None) -> Invocation:
        # Headless runs cannot answer permission prompts; the sandbox is the boundary.
        argv = ["claude", "-p", "--output-format", "stream-json", "--verbose",
                "--dangerously-skip-permissions", "--tools", ",".join(CLAUDE_TOOLS),
                *_model("--model", spec), *(session or [])]
        if spec.system_prompt:
            # Appended: Claude Code's own system prompt (its tools, the repository's CLAUDE.md)
            # stays as it is; --system-prompt would replace it.
            argv += ["--append-system-prompt", spec.system_prompt]
        return Invocation(argv, prompt_file)

    def parser(self) -> StreamParser:
        return ClaudeParser()

    def environment(self, spec: Spec) -> dict[str, str]:
        # The Task tools (the plan the check run shows) exist only for some models unless
        # this is set.
        return {"CLAUDE_CODE_ENABLE_TODO_TOOLS": "1"}

    # 2.1.x: `--session-id <uuid>` names a new session and `--resume <uuid>` continues one in
    # print mode, keeping its id. A session is one JSON-lines file (and a directory of its
    # subagents' files) under the config directory's projects/<the working directory, each
    # character other than a letter or digit made "-">/; it resumes in another directory once
    # its file is there. An unknown id ends the run with "No conversation found".
    resumable = True

    def session_args(self, session_id: str, resume: bool, root: Path) -> list[str]:
        return ["--resume" if resume else "--session-id", session_id]

    def session_root(self, env: Mapping[str, str], workspace: Path) -> Path:
        config = env.get("CLAUDE_CONFIG_DIR") or str(Path(env.get("HOME") or "~", ".claude"))
        return Path(config) / "projects" / re.sub(r"[^A-Za-z0-9]", "-", str(workspace))

    def session_names(self, root: Path, session_id: str) -> list[str]:
        return [f"{session_id}.jsonl", session_id]

    def resume_refused(self, text: str) -> bool:
        return "No conversation found with session ID" in text

    def refusal(self, uid: int, env: Mapping[str, str]) -> str | None:
        # The CLI's own test: root, unless IS_SANDBOX=1 or its bubblewrap marker says the
        # process is already confined.
        if uid == 0 and env.get("IS_SANDBOX") != "1" and not env.get("CLAUDE_CODE_BUBBLEWRAP"):
            return CLAUDE_ROOT_REFUSAL
        return None


# Codex's provider for runs behind the gateway. Its built-in "openai" provider ignores
# OPENAI_BASE_URL (0.169.0) and first tries a WebSocket to api.openai.com, which the gateway
# does not serve; a provider of our own names the gateway and plain HTTP streaming. Its key
# comes from OPENAI_API_KEY, the run's gateway credential (sent as a bearer token).
CODEX_PROVIDER = "agentbot"


def _codex_provider(gateway_url: str) -> list[str]:
    table = f"model_providers.{CODEX_PROVIDER}"
    base_url = provider_env(gateway_url, "")["OPENAI_BASE_URL"]
    settings = (f'model_provider="{CODEX_PROVIDER}"', f'{table}.name="agentbot gateway"',
                f"{table}.base_url={json.dumps(base_url)}", f'{table}.env_key="OPENAI_API_KEY"',
                f'{table}.wire_api="responses"', f"{table}.supports_websockets=false")
    return [arg for setting in settings for arg in ("-c", setting)]


def _codex_instructions(spec: Spec) -> list[str]:
    """A profile's system prompt as Codex's developer_instructions, which it sends as a
    developer message beside its own instructions (model_instructions_file would replace
    them). The value is a TOML string: JSON's escapes, less the surrogate pairs TOML lacks."""
    if not spec.system_prompt:
        return []
    text = json.dumps(spec.system_prompt, ensure_ascii=False).replace("\x7f", "\\u007f")
    return ["-c", f"developer_instructions={text}"]


class CodexAdapter(Adapter):
    """`codex exec --json`, reading the prompt from stdin (`-`)."""

    name = "codex"

    def invocation(self, spec: Spec, prompt_file: Path,
                   session: list[str] | None = None) -> Invocation:
        # Codex's own sandbox (bubblewrap/Landlock and seccomp on Linux) would only nest
        # inside ours, needs what gVisor may not give, and cuts commands off the network
        # (the egress proxy); approvals cannot be answered headless. So: bypassed, with the
        # run's sandbox as the boundary. update_plan (the plan the check run shows) is off by
        # default in 0.169.0 and offered only with tools.update_plan.enabled. Without
        # unbounded_connection_retries an unreachable provider fails the turn after Codex's
        # retries instead of "waiting for network" until the run's time limit. No analytics.
        # `exec resume <id>` continues a session (`session`), with the same options.
        argv = ["codex", "exec", *(session[:1] if session else []), "--json",
                "--dangerously-bypass-approvals-and-sandbox",
                "--disable", "unbounded_connection_retries", "-c", "analytics.enabled=false",
                "-c", "tools.update_plan.enabled=true",
                *(_codex_provider(spec.gateway_url) if spec.gateway_url else []),
                *_codex_instructions(spec), *_model("--model", spec), *(session or [])[1:],
                "-"]
        return Invocation(argv, prompt_file)

    # 0.169.0: `codex exec resume <id>` continues a session headless. Codex names a new
    # session itself (the thread id of its first event); its file is
    # $CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl, found by id from any
    # directory. An unknown id ends the run with "thread/resume failed: no rollout found for
    # thread id <id>".
    resumable = True

    def session_args(self, session_id: str, resume: bool, root: Path) -> list[str]:
        return ["resume", session_id] if resume else []

    def session_root(self, env: Mapping[str, str], workspace: Path) -> Path:
        return Path(env.get("CODEX_HOME") or Path(env.get("HOME") or "~", ".codex"))

    def session_names(self, root: Path, session_id: str) -> list[str]:
        return sorted(path.relative_to(root).as_posix()
                      for path in (root / "sessions").glob(f"*/*/*/rollout-*-{session_id}.jsonl"))

    def resume_refused(self, text: str) -> bool:
        return "no rollout found for thread id" in text

    def parser(self) -> StreamParser:
        return CodexParser()


# A bare model name's provider, as the bot tells which key a run needs (bot/config/providers).
_OPENCODE_PROVIDERS = (("anthropic", re.compile(r"claude|sonnet|opus|haiku", re.I)),
                       ("openai", re.compile(r"gpt-|o[1-9](?:$|-)|codex|chatgpt", re.I)))


def opencode_model(model: str) -> str:
    """OpenCode's `provider/model` for a model name: as given when it names a provider (or
    belongs to no family we know, for OpenCode to say so), else with its family's provider."""
    if "/" in model:
        return model
    for provider, family in _OPENCODE_PROVIDERS:
        if family.match(model):
            return f"{provider}/{model}"
    return model


# OpenCode (1.18.x) reaches Anthropic through the AI SDK, whose base URL ends in /v1 (it reads
# ANTHROPIC_BASE_URL without one appended, so the gateway's /anthropic alone is a 404), and
# OpenAI's Responses API at OPENAI_BASE_URL. Its configuration comes in OPENCODE_CONFIG_CONTENT
# (it merges over the user's and the project's own): both providers name the gateway, no
# update checks, no sharing. Its bundled model list stands in for models.dev, so a run does
# not wait on the network for it.
def opencode_config(gateway_url: str | None) -> dict[str, object]:
    """OpenCode's settings for a run (OPENCODE_CONFIG_CONTENT)."""
    config: dict[str, object] = {"autoupdate": False, "share": "disabled"}
    if gateway_url:
        urls = provider_env(gateway_url, "")
        config["provider"] = {
            "anthropic": {"options": {"baseURL": urls["ANTHROPIC_BASE_URL"] + "/v1"}},
            "openai": {"options": {"baseURL": urls["OPENAI_BASE_URL"]}}}
    return config


class OpenCodeAdapter(Adapter):
    """`opencode run --format json --auto`; it appends a non-TTY stdin to the message."""

    name = "opencode"

    def invocation(self, spec: Spec, prompt_file: Path,
                   session: list[str] | None = None) -> Invocation:
        # --auto: headless, nobody answers a permission prompt (a command outside the
        # workspace, say); the run's sandbox is the boundary, as for the other CLIs.
        model = ["--model", opencode_model(spec.model)] if spec.model else []
        return Invocation(["opencode", "run", "--format", "json", "--auto", *model,
                           *(session or [])], prompt_file)

    # 1.18.x keeps sessions in a SQLite database ($XDG_DATA_HOME or ~/.local/share,
    # opencode/opencode.db), which no file of a session carries: `opencode export <id>` prints
    # one as JSON and `opencode import <file>` loads it, after which `run --session <id>`
    # continues it (in the same repository: its project is the repository's first commit).
    # OpenCode names a session itself (the sessionID of its events); an id it does not have
    # ends the run with "Error: Session not found".
    resumable = True

    def session_args(self, session_id: str, resume: bool, root: Path) -> list[str]:
        return ["--session", session_id] if resume else []

    def session_root(self, env: Mapping[str, str], workspace: Path) -> Path:
        return Path(env.get("HOME") or "~", ".agentbot-sessions", self.name)

    def session_names(self, root: Path, session_id: str) -> list[str]:
        return [f"{session_id}.json"]

    def resume_refused(self, text: str) -> bool:
        return "Session not found" in text  # `run --session` with an id it does not have

    def session_export(self, session_id: str) -> list[str] | None:
        return ["opencode", "export", session_id]

    def session_import(self, path: Path) -> list[str] | None:
        return ["opencode", "import", str(path)]

    def parser(self) -> StreamParser:
        return OpenCodeParser()

    def environment(self, spec: Spec) -> dict[str, str]:
        return {"OPENCODE_CONFIG_CONTENT": json.dumps(opencode_config(spec.gateway_url)),
                "OPENCODE_DISABLE_MODELS_FETCH": "1"}


class AiderAdapter(Adapter):
    """aider with the prompt in `--message-file`; no commits, plain output, and every question
    answered with its default.

    Not `--yes-always`: that answers "no" to the one question that wants an explicit yes,
    "Run shell command?" (aider 0.86 `Coder.handle_shell_commands` asks with
    `explicit_yes_required`), so a command the model gives (`rm old.txt`, the only way it has to
    delete a file) was shown and never run. With stdin closed and no prompt_toolkit session
    (`--no-fancy-input`), `InputOutput.confirm_ask` reads end of input, which aider takes as
    Enter, the question's default, and every question aider asks defaults to yes: the answers
    `--yes-always` gives, and the model's commands run, as the other CLIs' do, inside the
    run's sandbox."""

    name = "aider"
    excludes = (".aider*",)

    def invocation(self, spec: Spec, prompt_file: Path,
                   session: list[str] | None = None) -> Invocation:
        argv = ["aider", "--no-fancy-input", "--no-auto-commits", "--no-pretty", "--no-gitignore",
                "--no-check-update", "--no-show-release-notes", "--analytics-disable",
                *_model("--model", spec), *(session or []), "--message-file", str(prompt_file)]
        return Invocation(argv, None)

    # 0.86.x: a session is its chat history, a Markdown file (`--chat-history-file`, else
    # .aider.chat.history.md in the checkout); `--restore-chat-history` gives the model the
    # earlier conversation from it (summarised when long). Kept outside the checkout, one file
    # a session; aider has no session ids, so the runner names them.
    resumable = True

    def session_args(self, session_id: str, resume: bool, root: Path) -> list[str]:
        history = ["--chat-history-file", str(root / f"{session_id}.md")]
        return history + (["--restore-chat-history"] if resume else [])

    def session_root(self, env: Mapping[str, str], workspace: Path) -> Path:
        return Path(env.get("HOME") or "~", ".agentbot-sessions", self.name)

    def session_names(self, root: Path, session_id: str) -> list[str]:
        return [f"{session_id}.md"]

    def parser(self) -> StreamParser:
        return AiderParser()

    def environment(self, spec: Spec) -> dict[str, str]:
        # litellm's model prices as the pinned version ships them, not fetched at start-up.
        return {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}


class CommandAdapter(Adapter):
    """Any program from `agent_command`; `{prompt_file}` in an argument becomes the path."""

    name = "command"

    def invocation(self, spec: Spec, prompt_file: Path,
                   session: list[str] | None = None) -> Invocation:
        if not spec.agent_command:
            raise ValueError("the command agent needs agent_command")
        argv = [arg.replace(PROMPT_PLACEHOLDER, str(prompt_file)) for arg in spec.agent_command]
        return Invocation(argv, prompt_file)

    def parser(self) -> StreamParser:
        return CommandParser()


ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (ClaudeAdapter(), CodexAdapter(), OpenCodeAdapter(), AiderAdapter(),
                    CommandAdapter())
}


def adapter_for(name: str) -> Adapter:
    """The adapter for an agent name of the spec; KeyError for an unknown one."""
    return ADAPTERS[name]
