"""Capture tests/data/transcripts/<cli>-captured-*.jsonl (aider's: .txt) from the real, pinned
CLIs playing the scenarios against the model doubles:
`scripts/capture-transcripts [cli[:scenario]...]`.

Claude Code plays tests/clis/scenarios.py against the Messages double, Codex plays
tests/clis/codex_scenarios.py against the Responses double, OpenCode plays
tests/clis/opencode_scenarios.py and aider tests/clis/aider_scenarios.py against the Messages
double (an Anthropic model). Each CLI runs as the sandbox runs it (the adapter's argv and
environment), as an unprivileged account; what varies from run to run (ids, times, paths,
the double's port) is replaced by fixed values, so a capture with the same CLI version
changes nothing else.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sandbox.agents import adapter_for
from sandbox.gateway import provider_env
from sandbox.spec import parse_spec
from tests.clis import aider_scenarios, codex_scenarios, opencode_scenarios, scenarios
from tests.clis.support import Account, expose, installed_cli, unprivileged_account
from tests.fakes.model_anthropic import AnthropicDouble, Failure, Turn
from tests.fakes.model_openai import OpenAIDouble, openai_failure, quota_failure
from tests.sandbox.support import DATA, make_repository, make_spec

TRANSCRIPTS = DATA / "transcripts"
WORKSPACE = "/workspace"
HOME = "/home/agent"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_SOCKET = re.compile(r"/tmp/cc-socks[^/\"]*/\d+\.sock")
# Timings differ on every run; a fixed value keeps captures comparable.
_TIMING = re.compile(r'"(duration_ms|duration_api_ms|ttft_ms|ttft_stream_ms|time_to_request_ms|'
                     r'first_content_frame_ms)":\d+')

# name -> (the scripted turns, extra environment)
SCENARIOS: dict[str, tuple[Callable[[], list[Turn]], dict[str, str]]] = {
    "edits": (scenarios.the_edits, {}),
    "plan": (scenarios.the_plan, {}),
    "overloaded": (lambda: scenarios.a_model_error(Failure.overloaded()), {}),
    "max-turns": (scenarios.past_the_turn_limit, {"CLAUDE_CODE_MAX_TURNS": "2"}),
}
# Codex has no turn limit; its errors come as an OpenAI API gives them.
CODEX_SCENARIOS: dict[str, Callable[[], list[Turn]]] = {
    "edits": codex_scenarios.the_edits,
    "plan": codex_scenarios.the_plan,
    "overloaded": lambda: codex_scenarios.a_model_error(openai_failure(503)),
    "unauthorized": lambda: codex_scenarios.a_model_error(openai_failure(401)),
    "quota": lambda: codex_scenarios.a_model_error(quota_failure()),
    "stream-cut": lambda: codex_scenarios.a_model_error(Failure.stream_cut()),
}
# OpenCode's errors come after its own retries (5, which cannot be turned off): the
# overloaded double says `retry-after: 0`.
OPENCODE_SCENARIOS: dict[str, Callable[[], list[Turn]]] = {
    "edits": opencode_scenarios.the_edits,
    "plan": opencode_scenarios.the_plan,
    "overloaded": lambda: opencode_scenarios.a_model_error(opencode_scenarios.overloaded()),
    "unauthorized": lambda: opencode_scenarios.a_model_error(Failure.unauthorized()),
}
# aider prints text, not JSON: its captures are .txt.
AIDER_SCENARIOS: dict[str, Callable[[], list[Turn]]] = {
    "edits": aider_scenarios.the_edits,
    "unauthorized": lambda: [Turn(failure=Failure.unauthorized())],
}
CAPTURES = {"claude": list(SCENARIOS), "codex": list(CODEX_SCENARIOS),
            "opencode": list(OPENCODE_SCENARIOS), "aider": list(AIDER_SCENARIOS)}
# OpenCode's ids (ses_, msg_, prt_ and a time-ordered tail), epoch-millisecond times and the
# Date header of an error's response.
_OPENCODE_ID = re.compile(r"\b(ses|msg|prt)_[0-9A-Za-z]{20,}")
_OPENCODE_TIME = re.compile(r'"(timestamp|start|end|created|completed)":\d{12,}')
_HTTP_DATE = re.compile(r'"date":"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} [\d:]{8} GMT"')


def normalise(lines: list[str], workspace: str, home: str, gateway: str) -> list[str]:
    """The captured lines with the run's own ids, times and paths made fixed."""
    ids: dict[str, str] = {}

    def same_id(found: re.Match[str]) -> str:
        return ids.setdefault(found.group(0), f"00000000-0000-4000-8000-{len(ids) + 1:012d}")

    # Claude Code names a project's data directory after its path.
    slug, fixed_slug = (re.sub(r"[^A-Za-z0-9]", "-", path) for path in (workspace, WORKSPACE))
    out = []
    for line in lines:
        line = line.replace(workspace, WORKSPACE).replace(home, HOME).replace(slug, fixed_slug)
        line = line.replace(gateway, "gateway.agentbot.test")
        line = _UUID.sub(same_id, line)
        line = _TIMESTAMP.sub("2026-01-01T00:00:00.000Z", line)
        line = _TIMING.sub(lambda found: f'"{found.group(1)}":100', line)
        out.append(_SOCKET.sub("/tmp/cc-socks/1.sock", line))
    return out


async def capture_claude(name: str, bin_dir: Path, account: Account, scratch: Path
                         ) -> list[str]:
    """Play one scenario on Claude Code; its stdout lines, normalised."""
    turns, extra = SCENARIOS[name]
    root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch))
    make_repository(root / "git")
    workspace, home = root / "git" / "work", root / "home"
    home.mkdir()
    prompt = root / "prompt.md"
    prompt.write_text(scenarios.PROMPT, encoding="utf-8")
    account.own(root)
    adapter = adapter_for("claude")
    spec = parse_spec({**make_spec(clone_url="https://github.com/octo/demo.git",
                                   callback_url="http://bot/internal/runs/12",
                                   base_sha="a" * 40, agent="claude").to_json_dict(),
                       "agent_command": None})
    invocation = adapter.invocation(spec, prompt)
    async with AnthropicDouble(turns()) as model:
        env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
               "LANG": "C.UTF-8", "ANTHROPIC_BASE_URL": model.url,
               "ANTHROPIC_API_KEY": "sk-capture", "CLAUDE_CODE_MAX_RETRIES": "0",
               "DISABLE_AUTOUPDATER": "1", **adapter.environment(spec), **extra}
        with prompt.open("rb") as stdin:
            process = await asyncio.create_subprocess_exec(
                *invocation.argv, cwd=workspace, env=env, stdin=stdin,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                **account.popen_args())
            out, err = await asyncio.wait_for(process.communicate(), 120)
        gateway = model.base_url.removeprefix("http://")
    if not out.strip():
        raise RuntimeError(f"{name}: no output (exit {process.returncode}): "
                           f"{err.decode(errors='replace')[-500:]}")
    return normalise(out.decode().splitlines(), str(workspace), str(home), gateway)


async def capture_codex(name: str, bin_dir: Path, account: Account, scratch: Path
                        ) -> list[str]:
    """Play one scenario on Codex, its provider the double where the gateway would be, told
    not to retry (as tests/clis does); its stdout lines, normalised."""
    root = Path(tempfile.mkdtemp(prefix=f"codex-{name}-", dir=scratch))
    make_repository(root / "git")
    workspace, home = root / "git" / "work", root / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(codex_scenarios.NO_RETRIES)
    prompt = root / "prompt.md"
    prompt.write_text(codex_scenarios.PROMPT, encoding="utf-8")
    account.own(root)
    adapter = adapter_for("codex")
    spec = parse_spec({**make_spec(clone_url="https://github.com/octo/demo.git",
                                   callback_url="http://bot/internal/runs/12",
                                   base_sha="a" * 40, agent="codex").to_json_dict(),
                       "agent_command": None})
    async with OpenAIDouble(CODEX_SCENARIOS[name](), prefix="/openai") as model:
        invocation = adapter.invocation(replace(spec, gateway_url=model.base_url), prompt)
        env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
               "LANG": "C.UTF-8", **provider_env(model.base_url, "agw_capture"),
               **adapter.environment(spec)}
        out, err, code = await _run(invocation.argv, workspace, env, prompt, account)
        gateway = model.base_url.removeprefix("http://")
    if not out.strip():
        raise RuntimeError(f"codex {name}: no output (exit {code}): "
                           f"{err.decode(errors='replace')[-500:]}")
    return normalise(out.decode().splitlines(), str(workspace), str(home), gateway)


def normalise_opencode(lines: list[str]) -> list[str]:
    """OpenCode's own ids and times made fixed (after `normalise`)."""
    ids: dict[str, str] = {}

    def same_id(found: re.Match[str]) -> str:
        return ids.setdefault(found.group(0), f"{found.group(1)}_{len(ids) + 1:026d}")

    out = []
    for line in lines:
        line = _OPENCODE_ID.sub(same_id, line)
        line = _OPENCODE_TIME.sub(lambda found: f'"{found.group(1)}":1767225600000', line)
        out.append(_HTTP_DATE.sub('"date":"Thu, 01 Jan 2026 00:00:00 GMT"', line))
    return out


async def capture_opencode(name: str, bin_dir: Path, account: Account, scratch: Path
                           ) -> list[str]:
    """Play one scenario on OpenCode, its Anthropic provider the double where the gateway
    would be; its stdout lines, normalised."""
    root = Path(tempfile.mkdtemp(prefix=f"opencode-{name}-", dir=scratch))
    make_repository(root / "git")
    workspace, home = root / "git" / "work", root / "home"
    home.mkdir()
    prompt = root / "prompt.md"
    prompt.write_text(opencode_scenarios.PROMPT, encoding="utf-8")
    account.own(root)
    adapter = adapter_for("opencode")
    spec = parse_spec({**make_spec(clone_url="https://github.com/octo/demo.git",
                                   callback_url="http://bot/internal/runs/12",
                                   base_sha="a" * 40, agent="opencode").to_json_dict(),
                       "agent_command": None})
    async with AnthropicDouble(OPENCODE_SCENARIOS[name](), prefix="/anthropic") as model:
        spec = replace(spec, gateway_url=model.base_url)
        invocation = adapter.invocation(spec, prompt)
        env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
               "LANG": "C.UTF-8", **provider_env(model.base_url, "agw_capture"),
               **adapter.environment(spec)}
        out, err, code = await _run(invocation.argv, workspace, env, prompt, account)
        gateway = model.base_url.removeprefix("http://")
    if not out.strip():
        raise RuntimeError(f"opencode {name}: no output (exit {code}): "
                           f"{err.decode(errors='replace')[-500:]}")
    return normalise_opencode(normalise(out.decode().splitlines(), str(workspace), str(home),
                                        gateway))


async def capture_aider(name: str, bin_dir: Path, account: Account, scratch: Path
                        ) -> list[str]:
    """Play one scenario on aider, its Anthropic provider the double where the gateway would
    be; its stdout lines, with the workspace's path made fixed."""
    root = Path(tempfile.mkdtemp(prefix=f"aider-{name}-", dir=scratch))
    make_repository(root / "git")
    workspace, home = root / "git" / "work", root / "home"
    aider_scenarios.offline_model_info(home)
    prompt = root / "prompt.md"
    prompt.write_text(aider_scenarios.PROMPT, encoding="utf-8")
    account.own(root)
    adapter = adapter_for("aider")
    spec = parse_spec({**make_spec(clone_url="https://github.com/octo/demo.git",
                                   callback_url="http://bot/internal/runs/12",
                                   base_sha="a" * 40, agent="aider").to_json_dict(),
                       "agent_command": None})
    async with AnthropicDouble(AIDER_SCENARIOS[name](), prefix="/anthropic",
                               toolless=True) as model:
        spec = replace(spec, gateway_url=model.base_url)
        invocation = adapter.invocation(spec, prompt)
        env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
               "LANG": "C.UTF-8", "PWD": str(workspace),
               **provider_env(model.base_url, "agw_capture"), **adapter.environment(spec)}
        out, err, code = await _run(invocation.argv, workspace, env, invocation.stdin_path,
                                    account)
        gateway = model.base_url.removeprefix("http://")
    if not out.strip():
        raise RuntimeError(f"aider {name}: no output (exit {code}): "
                           f"{err.decode(errors='replace')[-500:]}")
    return normalise(out.decode().splitlines(), str(workspace), str(home), gateway)


async def _run(argv: list[str], cwd: Path, env: dict[str, str], stdin_path: Path | None,
               account: Account) -> tuple[bytes, bytes, int | None]:
    """Run a CLI as the runner does: stdin its prompt file, or closed (aider's: it answers
    each of its questions with the default on end of input)."""
    stdin = await asyncio.to_thread(stdin_path.read_bytes) if stdin_path else None
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **account.popen_args())
    out, err = await asyncio.wait_for(process.communicate(stdin), 120)
    return out, err, process.returncode


CAPTURE = {"claude": capture_claude, "codex": capture_codex, "opencode": capture_opencode,
           "aider": capture_aider}


def main(names: list[str]) -> int:
    """Capture `cli` (its every scenario) or `cli:scenario` for each name; all without."""
    wanted: dict[str, list[str]] = {}
    for entry in names or list(CAPTURES):
        cli, _, scenario = entry.partition(":")
        if cli not in CAPTURES or (scenario and scenario not in CAPTURES[cli]):
            print(f"unknown capture {entry!r}; known: " + ", ".join(
                f"{c}:{s}" for c, known in CAPTURES.items() for s in known), file=sys.stderr)
            return 2
        wanted.setdefault(cli, []).extend([scenario] if scenario else CAPTURES[cli])
    account, why_account = unprivileged_account()
    if account is None:
        print(why_account, file=sys.stderr)
        return 1
    scratch = Path(tempfile.mkdtemp(prefix="agentbot-capture-"))
    scratch.chmod(0o755)
    status = 0
    try:
        for cli, scenario_names in wanted.items():
            executable, why = installed_cli(cli)
            if executable is None:
                print(why, file=sys.stderr)
                status = 1
                continue
            bin_dir = expose(executable, account, scratch)
            for name in scenario_names:
                lines = asyncio.run(CAPTURE[cli](name, bin_dir, account, scratch))
                suffix = "txt" if cli == "aider" else "jsonl"
                target = TRANSCRIPTS / f"{cli}-captured-{name}.{suffix}"
                target.write_text("\n".join(lines) + "\n", encoding="utf-8")
                print(f"{target.relative_to(DATA.parent.parent)}: {len(lines)} lines")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
