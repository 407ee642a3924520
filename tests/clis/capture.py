"""Capture tests/data/transcripts/claude-captured-*.jsonl from the real, pinned Claude Code
playing the scenarios against the Messages double: `scripts/capture-transcripts`.

The CLI runs as the sandbox runs it (the adapter's argv and environment), as an unprivileged
account; what varies from run to run (ids, times, paths, the double's port) is replaced by
fixed values, so a capture with the same CLI version changes nothing else.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from sandbox.agents import adapter_for
from sandbox.spec import parse_spec
from tests.clis import scenarios
from tests.clis.support import Account, expose, installed_cli, unprivileged_account
from tests.fakes.model_anthropic import AnthropicDouble, Failure, Turn
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


async def capture(name: str, bin_dir: Path, account: Account, scratch: Path) -> list[str]:
    """Play one scenario; the CLI's stdout lines, normalised."""
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
               "DISABLE_AUTOUPDATER": "1", **adapter.environment(), **extra}
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


def main(names: list[str]) -> int:
    executable, why = installed_cli("claude")
    account, why_account = unprivileged_account()
    if executable is None or account is None:
        print(why or why_account, file=sys.stderr)
        return 1
    scratch = Path(tempfile.mkdtemp(prefix="agentbot-capture-"))
    scratch.chmod(0o755)
    try:
        bin_dir = expose(executable, account, scratch)
        for name in names or list(SCENARIOS):
            lines = asyncio.run(capture(name, bin_dir, account, scratch))
            target = TRANSCRIPTS / f"claude-captured-{name}.jsonl"
            target.write_text("\n".join(lines) + "\n", encoding="utf-8")
            print(f"{target.relative_to(DATA.parent.parent)}: {len(lines)} lines")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
