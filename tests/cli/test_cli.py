"""The `agentbot` command line as a user runs it: settings errors, migrate, receive --dry-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.config.settings import format_duration, load_settings, parse_duration
from bot.store import migrate

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ROOT / "tests" / "payloads"


def agentbot(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60
             ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("GITHUB_", "AGENTBOT_"))}
    return subprocess.run([sys.executable, "-m", "bot", *args], env={**clean, **env},
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_some_app_settings_missing_or_malformed_exit_2_naming_each(tmp_path: Path) -> None:
    done = agentbot("serve", env={"GITHUB_APP_ID": "12", "GITHUB_PRIVATE_KEY": "not a pem"},
                    cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert any("GITHUB_WEBHOOK_SECRET" in line for line in lines)
    assert any("GITHUB_PRIVATE_KEY" in line and "PEM" in line for line in lines)
    assert "not a pem" not in done.stderr  # a value is never echoed


def test_bad_optional_setting_names_the_variable(tmp_path: Path, app_private_key: str) -> None:
    done = agentbot("serve", env={"GITHUB_APP_ID": "12", "GITHUB_PRIVATE_KEY": app_private_key,
                                  "GITHUB_WEBHOOK_SECRET": "s", "AGENTBOT_RUN_TIMEOUT": "soon",
                                  "AGENTBOT_EXECUTOR": "docker",
                                  "AGENTBOT_DEFAULT_AGENT": "clod"}, cwd=tmp_path)
    assert done.returncode == 2
    assert "AGENTBOT_RUN_TIMEOUT" in done.stderr and "AGENTBOT_EXECUTOR" in done.stderr
    assert "AGENTBOT_DEFAULT_AGENT" in done.stderr and "claude, codex" in done.stderr
    assert "BEGIN" not in done.stderr


def test_private_key_path_that_does_not_exist(tmp_path: Path) -> None:
    settings, problems = load_settings(GITHUB_APP_ID=1, GITHUB_WEBHOOK_SECRET="s",
                                       GITHUB_PRIVATE_KEY_PATH=tmp_path / "missing.pem",
                                       _env_file=None)
    assert settings is not None
    assert problems == [f"GITHUB_PRIVATE_KEY_PATH: cannot read {tmp_path / 'missing.pem'}: "
                        "No such file or directory"]


def test_key_with_flattened_newlines_is_accepted(app_private_key: str) -> None:
    flattened = app_private_key.strip().replace("\n", "\\n")
    _, problems = load_settings(GITHUB_APP_ID=1, GITHUB_WEBHOOK_SECRET="s",
                                GITHUB_PRIVATE_KEY=flattened, _env_file=None)
    assert problems == []


def test_settings_come_from_a_dotenv_file(tmp_path: Path, app_private_key: str) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(app_private_key)
    (tmp_path / ".env").write_text(
        f"GITHUB_APP_ID=99\nGITHUB_PRIVATE_KEY_PATH={key_file}\nGITHUB_WEBHOOK_SECRET=x\n"
        "AGENTBOT_RUN_TIMEOUT=1h30m\n")
    done = agentbot("migrate", env={"AGENTBOT_DATABASE_URL":
                                    f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        settings, problems = load_settings()
    finally:
        os.chdir(cwd)
    assert problems == [] and settings is not None
    assert settings.github_app_id == 99 and settings.run_timeout == 5400


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("20m", 1200),
                                           ("1h", 3600), ("1h30m", 5400)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5", "0", "1d", "m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_migrate_creates_the_schema_and_is_repeatable(tmp_path: Path) -> None:
    env = {"AGENTBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"}
    first = agentbot("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"database at revision {migrate.head()}" in first.stdout
    # The log says what ran, without Alembic's plugin roll-call on every start.
    assert "Running upgrade  -> 0001" in first.stderr
    assert "setup plugin" not in first.stderr
    again = agentbot("migrate", env=env, cwd=tmp_path)
    assert again.returncode == 0 and migrate.head() in again.stdout


def test_receive_dry_run_on_a_label_prints_decision_and_requests(tmp_path: Path) -> None:
    payload = json.loads((PAYLOADS / "issues.labeled.json").read_text())
    payload["label"]["name"] = "agent"
    payload["sender"]["type"] = "User"
    path = tmp_path / "labeled.json"
    path.write_text(json.dumps(payload))
    # No App configured at all: a dry run needs none and sends nothing.
    done = agentbot("receive", "--event", "issues", "--payload", str(path), "--dry-run",
                    env={"AGENTBOT_LOG_LEVEL": "warning"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    repo = payload["repository"]["full_name"]
    number = payload["issue"]["number"]
    assert f"new -> queued: {repo}#{number}, agent claude, label by @" in out
    assert f"GET /repos/{repo}/collaborators/{payload['sender']['login']}/permission" in out
    assert "/reactions" not in out  # the status comment is the acknowledgement
    assert not (tmp_path / "agentbot.db").exists()  # the real database was not touched
    # The launch it would make: the scoped read-only token and the Job and Secret.
    assert (f"POST /app/installations/{payload['installation']['id']}/access_tokens "
            '{"permissions": {"contents": "read"}') in out
    manifests = out.split("# Kubernetes objects (not created)\n", 1)[1]
    job, secret = [d for d in yaml.safe_load_all(manifests) if d]
    assert (job["kind"], secret["kind"]) == ("Job", "Secret")
    assert job["metadata"]["name"] == secret["metadata"]["name"] == "agentbot-run-1"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "sandbox"
    assert secret["stringData"]["gateway-token"] == "<redacted>"
    assert secret["stringData"]["callback-token"] == "<redacted>"
    spec = json.loads(secret["stringData"]["spec.json"])
    assert spec["repository"] == repo and spec["base_ref"] == "main"


def test_receive_dry_run_of_an_ignored_comment(tmp_path: Path) -> None:
    payload = json.loads((PAYLOADS / "issue_comment.created.json").read_text())
    payload["comment"]["body"] = "Looks good to me"
    path = tmp_path / "comment.json"
    path.write_text(json.dumps(payload))
    done = agentbot("receive", "--event", "issue_comment", "--payload", str(path),
                    "--dry-run", env={}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no run was queued or changed" in done.stdout
    assert "# GitHub requests (not sent)\nnone" in done.stdout


def test_receive_refuses_a_payload_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1]")
    done = agentbot("receive", "--event", "issues", "--payload", str(path), "--dry-run",
                    env={}, cwd=tmp_path)
    assert done.returncode == 2
    assert "is not a JSON object" in done.stderr
