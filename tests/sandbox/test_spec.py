"""The sandbox's inputs and outputs as plain data: spec checks, path rules, commit messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.executors.base import SandboxSecrets
from sandbox.changeset import ChangesetError, check_path, check_symlink
from sandbox.checkout import auth_env, git_env
from sandbox.events import Redactor, truncate
from sandbox.result import commit_message, write_termination_message
from sandbox.runner import child_env
from sandbox.spec import Secrets, SpecError, load, parse_spec
from tests.sandbox.support import CALLBACK_TOKEN, GATEWAY_TOKEN, make_spec, write_spec_dir


def spec_data(**changes: Any) -> dict[str, Any]:
    data = make_spec(clone_url="https://github.com/octo/demo.git", base_sha="b" * 40,
                     callback_url="http://agentbot-internal:8081/internal/runs/12/"
                     ).to_json_dict()
    data.update(changes)
    return data


def test_the_bots_runspec_is_what_the_runner_reads(tmp_path: Path) -> None:
    write_spec_dir(tmp_path, spec_data())
    spec, secrets = load(tmp_path)

    assert spec.run_id == 12 and spec.agent == "command"
    assert spec.callback_url == "http://agentbot-internal:8081/internal/runs/12"
    assert spec.limits.timeout_seconds == 60
    assert (secrets.gateway_token, secrets.callback_token) == (GATEWAY_TOKEN, CALLBACK_TOKEN)
    assert GATEWAY_TOKEN not in repr(secrets)
    assert repr(SandboxSecrets("a", "b")).count("a") <= 1  # the bot's side hides them too


@pytest.mark.parametrize(("changes", "message"), [
    ({"agent": "gemini"}, "unknown agent 'gemini'"),
    ({"agent": "command", "agent_command": None}, "agent 'command' needs 'agent_command'"),
    ({"run_id": True}, "field 'run_id' is missing or not a int"),
    ({"setup": ["ok", 3]}, "'setup' must be a list of strings"),
    ({"base_sha": "HEAD"}, "'base_sha' must be a full lowercase hex commit id"),
    ({"clone_url": "file:///etc"}, "'clone_url' must be an http(s) URL"),
    ({"clone_url": "https://x:ghs_abc@github.com/o/r.git"}, "must not carry credentials"),
    ({"limits": {"timeout_seconds": 0, "setup_timeout_seconds": 1, "max_changed_files": 1,
                 "max_result_bytes": 1}}, "limits.timeout_seconds must be positive"),
    ({"model": 4}, "'model' must be a string or null"),
])
def test_a_malformed_spec_is_refused_naming_the_field(changes: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(spec_data(**changes))


def test_token_files_must_hold_one_token(tmp_path: Path) -> None:
    write_spec_dir(tmp_path, spec_data(), gateway_token="two words")
    with pytest.raises(SpecError, match="gateway-token is empty or not a single token"):
        load(tmp_path)
    (tmp_path / "gateway-token").write_text(GATEWAY_TOKEN)
    (tmp_path / "callback-token").unlink()
    with pytest.raises(SpecError, match="cannot read .*callback-token"):
        load(tmp_path)


@pytest.mark.parametrize("path", ["/etc/passwd", "../up", "a/../../b", "a//b", ".git/config",
                                  "sub/.GIT/hooks/pre-commit", "./x", ""])
def test_paths_outside_the_repository_are_refused(path: str) -> None:
    with pytest.raises(ChangesetError):
        check_path(path)


def test_ordinary_paths_pass() -> None:
    for path in ("README.md", "src/a b/ü.py", ".github/workflows/ci.yml", "a/.gitignore"):
        check_path(path)


@pytest.mark.parametrize(("path", "target", "ok"), [
    ("link", b"README.md", True),
    ("docs/link", b"../README.md", True),
    ("docs/link", b"../../etc/passwd", False),
    ("link", b"/etc/passwd", False),
    ("link", b"\xff\xfe", False),
])
def test_symlinks_must_stay_inside(path: str, target: bytes, ok: bool) -> None:
    if ok:
        check_symlink(path, target)
    else:
        with pytest.raises(ChangesetError):
            check_symlink(path, target)


def test_the_git_header_is_basic_auth_scoped_to_the_host() -> None:
    env = auth_env("https://github.example.com/octo/demo.git", "ghs_abc")

    assert env == {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.https://github.example.com/.extraHeader",
        "GIT_CONFIG_VALUE_0": "Authorization: Basic eC1hY2Nlc3MtdG9rZW46Z2hzX2FiYw==",
    }


def test_git_gets_a_clean_environment() -> None:
    env = git_env({"PATH": "/bin", "HOME": "/home/a", "GIT_TRACE_CURL": "1",
                   "GIT_CONFIG_COUNT": "3", "ANTHROPIC_API_KEY": "sk"})

    assert env["PATH"] == "/bin" and env["HOME"] == "/home/a"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert {"GIT_TRACE_CURL", "GIT_CONFIG_COUNT", "ANTHROPIC_API_KEY"}.isdisjoint(env)


def test_the_agent_environment_drops_runner_settings_and_anything_holding_a_token() -> None:
    spec = parse_spec(spec_data(model="opus"))
    base = {"PATH": "/bin", "ANTHROPIC_API_KEY": "sk-1", "AGENTBOT_SPEC_DIR": "/var/run/agentbot",
            "GITHUB_TOKEN": "x", "LEAKY": f"prefix-{GATEWAY_TOKEN}", "GIT_CONFIG_KEY_0": "x",
            "PYTHONPATH": f"/opt/other:{Path(__file__).resolve().parents[2]}"}
    env = child_env(base, spec, Path("/tmp/p/prompt.md"), Secrets(GATEWAY_TOKEN, CALLBACK_TOKEN),
                    Path("/workspace"))

    # A provider key the runner inherited never reaches the agent (the gateway holds keys).
    assert {"AGENTBOT_SPEC_DIR", "GITHUB_TOKEN", "LEAKY", "ANTHROPIC_API_KEY"}.isdisjoint(env)
    assert env["PYTHONPATH"] == "/opt/other"
    assert env["AGENTBOT_PROMPT_FILE"] == "/tmp/p/prompt.md"
    assert env["AGENTBOT_MODEL"] == "opus"
    assert (env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == ("safe.directory",
                                                                    "/workspace")


def test_the_agent_gets_the_gateway_as_provider_and_proxy_and_no_other_key() -> None:
    spec = parse_spec(spec_data(gateway_url="http://gateway.agentbot:8082/",
                                proxy_url="http://gateway.agentbot:8083"))
    base = {"PATH": "/bin", "ANTHROPIC_API_KEY": "sk-ant-real", "OPENAI_BASE_URL": "https://x",
            "https_proxy": "http://corp:3128", "CLAUDE_CODE_OAUTH_TOKEN": "oauth"}
    env = child_env(base, spec, Path("/tmp/p/prompt.md"), Secrets(GATEWAY_TOKEN, CALLBACK_TOKEN),
                    Path("/workspace"))

    assert env["ANTHROPIC_BASE_URL"] == "http://gateway.agentbot:8082/anthropic"
    assert env["OPENAI_BASE_URL"] == env["OPENAI_API_BASE"] == \
        "http://gateway.agentbot:8082/openai/v1"
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "CODEX_API_KEY"):
        assert env[name] == GATEWAY_TOKEN
    proxy = f"http://agentbot:{GATEWAY_TOKEN}@gateway.agentbot:8083"
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        assert env[name] == proxy
    assert env["NO_PROXY"] == env["no_proxy"] == "gateway.agentbot"
    assert "CLAUDE_CODE_OAUTH_TOKEN" not in env
    assert "sk-ant-real" not in str(env) and CALLBACK_TOKEN not in str(env)


@pytest.mark.parametrize(("summary", "expected"), [
    ("Fix the parser\n\nThe month was off by one.",
     "Fix the parser\n\nThe month was off by one.\n\nAgentbot-Run: 7\n"),
    ("## Summary\n- **Fix** the parser", "Summary\n\n- **Fix** the parser\n\nAgentbot-Run: 7\n"),
    (None, "Apply the changes of agentbot run 7\n\nAgentbot-Run: 7\n"),
])
def test_commit_messages_come_from_the_summary(summary: str | None, expected: str) -> None:
    assert commit_message(summary, 7) == expected


def test_a_long_first_line_is_clipped_in_the_title_and_kept_in_the_body() -> None:
    line = "word " * 30
    title, _, body = commit_message(line, 7).partition("\n\n")

    assert len(title) == 72 and title.endswith("…")
    assert body.startswith(line.strip())


def test_redaction_and_truncation() -> None:
    redactor = Redactor(["abc", "abcdef", ""])
    assert redactor.value({"k abcdef": ["x abc y", 3, None]}) == {
        "k [redacted]": ["x [redacted] y", 3, None]}
    assert truncate("x" * 10, 4) == "xxxx… [6 more characters]"


def test_the_termination_message_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    target = tmp_path / "termination-log"
    monkeypatch.setenv("AGENTBOT_TERMINATION_LOG", str(target))
    write_termination_message("é" * 5000)

    assert len(target.read_bytes()) <= 4096
    assert target.read_text() == "é" * 2048
