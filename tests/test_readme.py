"""README.md says what the code does: commands table, quick start, settings, metrics, Secrets."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from bot.commands.grammar import commands_table_markdown
from bot.config.repo import KEYS
from bot.config.settings import Settings, load_settings, settings_table_markdown
from bot.metrics import Metrics
from bot.setup.flow import AppCredentials, write_env

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
TABLE = re.compile(r"<!-- commands:start -->\n(.*?)\n<!-- commands:end -->", re.S)
SETTINGS = re.compile(r"<!-- settings:start -->\n(.*?)\n<!-- settings:end -->", re.S)
# The keys of .github/agentbot.yml (the README's table), and allow_forks.
REPO_CONFIG_KEYS = set(KEYS)


def section(title: str) -> str:
    """The text of a `## title` section, up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(1)


def test_commands_table_is_the_one_the_registry_generates() -> None:
    match = TABLE.search(README)
    assert match, "README.md lacks the <!-- commands:start/end --> markers"
    assert match.group(1) == commands_table_markdown(), (
        "README.md's commands table is stale; paste the output of "
        "`python -c 'from bot.commands.grammar import commands_table_markdown as t; print(t())'`")


def test_settings_table_is_the_one_the_settings_generate() -> None:
    assert all(field.description for field in Settings.model_fields.values()), (
        "every setting needs a description: it is the README's text for it")
    match = SETTINGS.search(README)
    assert match, "README.md lacks the <!-- settings:start/end --> markers"
    assert match.group(1) == settings_table_markdown(), (
        "README.md's settings table is stale; paste the output of "
        "`python -c 'from bot.config.settings import settings_table_markdown as t; print(t())'`")


def test_quick_start_is_exactly_two_commands_and_ci_runs_the_second() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", section("Try it"), re.S)
    commands = [line for block in blocks for line in block.splitlines() if line.strip()]
    assert len(commands) == 2, commands
    serve, tests = commands
    assert serve.endswith("&& .venv/bin/agentbot serve")
    assert tests.endswith("&& .venv/bin/python -m pytest")
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    # .ci/run activates a fresh venv, so `python` there is the README's `.venv/bin/python`.
    assert ci[-1] == tests.rsplit(".venv/bin/", 1)[1]


def test_repo_config_reference_lists_every_key_once() -> None:
    reference = section("Use it on repositories (admins)")
    keys = re.findall(r"^\| `([a-z_]+)` \|", reference, re.M)
    assert sorted(keys) == sorted(REPO_CONFIG_KEYS)
    example = re.search(r"```yaml\n(.*?)```", reference, re.S)
    assert example
    assert set(yaml.safe_load(example.group(1))) <= REPO_CONFIG_KEYS


def test_every_variable_named_is_a_setting() -> None:
    known = {field.alias for field in Settings.model_fields.values() if field.alias}
    named = set(re.findall(r"\b((?:AGENTBOT|GITHUB)_[A-Z_]+)\b", README))
    assert named, "the README names no setting"
    assert named <= known, named - known


def test_every_metric_named_is_served() -> None:
    served = Metrics().render().decode()
    named = set(re.findall(r"`(agentbot_[a-z_]+)", README))
    assert len(named) >= 8
    for name in named:
        assert re.search(rf"^# TYPE {name} ", served, re.M), name


def test_the_secret_recipe_carries_the_env_file_setup_wrote(tmp_path: Path,
                                                             app_private_key: str) -> None:
    env_file = tmp_path / ".env"
    write_env(env_file, AppCredentials(31337, "agentbot-test", "https://github.com/apps/x",
                                       app_private_key, "0123456789abcdef0123456789abcdef"))
    # The README's own lines: source .env, then hand the three variables to kubectl.
    recipe = re.search(r"^(set -a && \. \./\.env && set \+a)$", README, re.M)
    assert recipe
    printed = subprocess.run(
        ["bash", "-c", f'{recipe.group(1)} && printf "%s\\0" "$GITHUB_APP_ID" '
                       '"$GITHUB_PRIVATE_KEY" "$GITHUB_WEBHOOK_SECRET"'],
        cwd=tmp_path, capture_output=True, text=True, check=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}).stdout
    app_id, key, secret = printed.split("\0")[:3]
    settings, problems = load_settings(GITHUB_APP_ID=app_id, GITHUB_PRIVATE_KEY=key,
                                       GITHUB_WEBHOOK_SECRET=secret, _env_file=None)
    assert problems == [] and settings is not None
    assert settings.github_app_id == 31337
    assert settings.private_key_pem() == app_private_key
