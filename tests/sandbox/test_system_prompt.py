"""A profile's system prompt on each CLI's command line: Claude Code's and Codex's own option."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

from bot.runs.launch import SYSTEM_PROMPT_AGENTS
from sandbox.agents import ADAPTERS, adapter_for
from sandbox.spec import Spec, parse_spec
from tests.sandbox.support import make_spec

# Quotes, a backslash, a tab, a control character, DEL, non-ASCII and an emoji: what a
# Markdown file may hold and TOML must still read back exactly.
TEXT = 'Say "hi" \\ then\ttab\x01\x7f — naïve 🙂\nSecond line.'


def spec_for(agent: str, system_prompt: str | None) -> Spec:
    data = replace(make_spec(clone_url="https://github.com/octo/demo.git", agent=agent,
                             callback_url="http://bot:8081/internal/runs/12",
                             base_sha="a" * 40), system_prompt=system_prompt).to_json_dict()
    if agent != "command":
        data["agent_command"] = None
    return parse_spec(data)


def test_claude_code_appends_it_to_its_own_system_prompt(tmp_path: Path) -> None:
    claude = adapter_for("claude")
    argv = claude.invocation(spec_for("claude", TEXT), tmp_path).argv
    assert argv[argv.index("--append-system-prompt") + 1] == TEXT
    assert "--system-prompt" not in argv
    plain = claude.invocation(spec_for("claude", None), tmp_path).argv
    assert "--append-system-prompt" not in plain


def test_codex_gets_it_as_developer_instructions_in_toml(tmp_path: Path) -> None:
    argv = adapter_for("codex").invocation(spec_for("codex", TEXT), tmp_path).argv
    [setting] = [argv[i + 1] for i, arg in enumerate(argv)
                 if arg == "-c" and argv[i + 1].startswith("developer_instructions=")]
    assert tomllib.loads(setting) == {"developer_instructions": TEXT}
    plain = adapter_for("codex").invocation(spec_for("codex", None), tmp_path).argv
    assert not any("developer_instructions" in arg for arg in plain)


def test_the_bot_sends_a_system_prompt_only_to_the_clis_that_take_one(tmp_path: Path) -> None:
    for name, adapter in ADAPTERS.items():
        if name == "command":
            continue
        argv = adapter.invocation(spec_for(name, "MARKER-TEXT"), tmp_path).argv
        assert any("MARKER-TEXT" in arg for arg in argv) == (name in SYSTEM_PROMPT_AGENTS), name


def test_the_spec_carries_it_or_none() -> None:
    assert spec_for("claude", TEXT).system_prompt == TEXT
    assert spec_for("claude", "").system_prompt is None
