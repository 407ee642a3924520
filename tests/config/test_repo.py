"""`.github/agentbot.yml`: parsing with lines and keys, operator caps, loading over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import gidgethub
import pytest

from bot.config.budget import Budget
from bot.config.loader import RepoConfigs, instructions_path
from bot.config.repo import (
    CONFIG_PATH,
    KEYS,
    ConfigError,
    Network,
    RepoConfig,
    effective,
    parse,
)
from bot.config.settings import Settings
from bot.github.client import GitHubApp
from tests.fakes.github import FakeGitHub

INSTALLATION, OTHER_INSTALLATION = 7001, 7002
REPO = "octo-org/hello-world"
CONTENTS = "GET /repos/{owner}/{repo}/contents/{path}"

FULL = """\
# every key, in the order the docs list them
trigger_label: robot
agent: Codex
model: gpt-5-codex
timeout: 1h30m
setup:
  - pip install -e .
  - |
    make deps
    make build
instructions: Keep changes small.
draft: false
max_changed_files: 12
protected_paths: [/secrets/**, "*.lock"]
allowed_bots: dependabot[bot]
allow_forks: yes
budget: $3, 2M tokens
network:
  allow: [registry.example.com, "*.example.org", "git.example.net:8443"]
"""


def error_of(text: str | bytes) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return caught.value


# parse


def test_every_key_in_the_documented_order() -> None:
    assert tuple(RepoConfig.model_fields) == KEYS
    config = parse(FULL)
    assert config == RepoConfig(
        trigger_label="robot", agent="codex", model="gpt-5-codex", timeout=5400,
        setup=("pip install -e .", "make deps\nmake build"), instructions="Keep changes small.",
        draft=False, max_changed_files=12, protected_paths=("secrets/**", "*.lock"),
        allowed_bots=("dependabot[bot]",), allow_forks=True,
        budget=Budget(dollars=3.0, tokens=2_000_000),
        network=Network(allow=("registry.example.com", "*.example.org",
                               "git.example.net:8443")),
    )
    assert hash(config) == hash(parse(FULL.replace("# every", "\n# every")))
    assert config.line_of("timeout") == 5 and config.line_of("setup") == 7
    assert config.line_of("allow_forks") == 16 and RepoConfig().line_of("agent") is None


@pytest.mark.parametrize("text", ["", "\n", "# nothing here yet\n", "~\n", "---\n"])
def test_an_empty_file_gives_the_defaults(text: str) -> None:
    assert parse(text).model_dump() == RepoConfig().model_dump()


def test_null_and_blank_values_leave_the_defaults() -> None:
    config = parse("model:\ntimeout: ~\nsetup: null\ndraft:\ninstructions: '  '\n")
    assert config.model_dump() == RepoConfig().model_dump()


def test_an_unknown_key_names_its_line_and_the_closest_key() -> None:
    error = error_of("agent: claude\n\ntimout: 20m\n")
    assert (error.path, error.line, error.key) == (CONFIG_PATH, 3, "timout")
    assert str(error) == (
        "`.github/agentbot.yml`, line 3, key `timout`: unknown key (did you mean `timeout`?); "
        "the keys are `trigger_label`, `agent`, `model`, `timeout`, `setup`, `instructions`, "
        "`draft`, `max_changed_files`, `protected_paths`, `allowed_bots`, `allow_forks`, "
        "`budget`, `network`, `approval`, `profiles`")


def test_an_unknown_key_far_from_every_key_gets_no_suggestion() -> None:
    error = error_of("draft: true\nbanana: 1\n")
    assert (error.line, error.key) == (2, "banana") and "did you mean" not in error.message


def test_the_first_problem_in_file_order_is_reported() -> None:
    error = error_of("timeout: soon\nbogus: 1\n")
    assert (error.line, error.key) == (1, "timeout")


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("agent: claude\nsetup:\n  - make\n - oops\n", 4, "expected <block end>"),
    ("model: [a, b\n", 2, "while parsing a flow sequence, expected ',' or ']'"),
    ("timeout: 20m\ndraft: 'yes\n", 3, "found unexpected end of stream"),
    ("a: 1\n---\nb: 2\n", 2, "expected a single document"),
    ("model: \x07\n", 1, "special characters are not allowed"),
])
def test_a_yaml_syntax_error_names_the_line(text: str, line: int, problem: str) -> None:
    error = error_of(text)
    assert error.line == line and error.key is None
    assert error.message.startswith("not valid YAML: ") and problem in error.message
    assert str(error).startswith(f"`{CONFIG_PATH}`, line {line}: not valid YAML")


def test_deep_nesting_is_refused_without_a_crash() -> None:
    assert "nested too deeply" in error_of("setup: " + "[" * 20000).message


@pytest.mark.parametrize("text", ["- agent\n- model\n", "just words\n", "42\n"])
def test_the_top_level_must_be_a_mapping(text: str) -> None:
    error = error_of(text)
    assert error.line == 1 and error.key is None and "mapping of keys" in error.message


def test_keys_must_be_names_and_appear_once() -> None:
    assert error_of("draft: true\n? [a, b]\n: 1\n").line == 2
    error = error_of("model: a\ndraft: true\nmodel: b\n")
    assert (error.line, error.key, error.message) == (3, "model",
                                                      "is given twice (first on line 1)")


def test_a_list_where_text_is_expected() -> None:
    error = error_of("agent: claude\nmodel:\n  - opus\n  - sonnet\n")
    assert (error.line, error.key, error.message) == (3, "model", "expected text, got a list")
    assert error_of("trigger_label: {name: x}\n").message == "expected text, got a mapping"


@pytest.mark.parametrize(("value", "seconds"), [
    ("20m", 1200), ("1h30m", 5400), ("1h", 3600), ("90s", 90), ("900", 900), ("'45m'", 2700),
])
def test_timeout_forms(value: str, seconds: int) -> None:
    assert parse(f"timeout: {value}\n").timeout == seconds


@pytest.mark.parametrize("value", ["1:30", "0", "-5", "1.5", "soon", "20 minutes", "true"])
def test_timeouts_that_are_not_durations(value: str) -> None:
    error = error_of(f"draft: true\ntimeout: {value}\n")
    assert (error.line, error.key) == (2, "timeout")
    assert error.message == (f"`{value}` is not a duration; write it like `20m`, `1h30m` or "
                             "`900` (seconds)")


INVALID = [
    ("approval", "approval: always", "unknown value `always`; `approval` is one of "
                                     "`required_for_outsiders`, `writers_only`"),
    ("approval", "approval: [writers_only]", "expected text, got a list"),
    ("trigger_label", "trigger_label: " + "x" * 51, "a label name is at most 50 characters"),
    ("trigger_label", "trigger_label: |\n  two\n  lines", "expected one line of text"),
    ("agent", "agent: cladue", "unknown agent `cladue` (did you mean `claude`?); the agents "
                               "are `claude`, `codex`, `opencode`, `aider`, `command`"),
    ("agent", "agent: [claude]", "expected text, got a list"),
    ("model", "model: two words", "`two words` is not a model name"),
    ("model", "model: -rf", "`-rf` is not a model name"),
    ("timeout", "timeout: [20m]", "expected text, got a list"),
    ("setup", "setup: {run: make}", "expected a shell command as text, got a mapping"),
    ("setup", "setup:\n  - make\n  - echo a: b", "expected a shell command as text, got a "
                                                 "mapping (quote an item that contains `: `)"),
    ("setup", "setup:\n  - make\n  - ''", "an item of the list is empty"),
    ("setup", "setup: [[make]]", "expected a shell command as text, got a list"),
    ("instructions", "instructions: [do, this]", "expected text, got a list"),
    ("instructions", "instructions: " + "x" * (64 * 1024 + 1),
     "the instructions are longer than 64 KiB"),
    ("draft", "draft: 'true'", "expected `true` or `false`, got `true`"),
    ("draft", "draft: 1", "expected `true` or `false`, got `1`"),
    ("draft", "draft: [true]", "expected `true` or `false`, got a list"),
    ("max_changed_files", "max_changed_files: 0", "expected a whole number of at least 1, got "
                                                  "`0`"),
    ("max_changed_files", "max_changed_files: -3", "got `-3`"),
    ("max_changed_files", "max_changed_files: 2.5", "got `2.5`"),
    ("max_changed_files", "max_changed_files: ten", "got `ten`"),
    ("max_changed_files", "max_changed_files: true", "got `true`"),
    ("protected_paths", "protected_paths:\n  - a/**\n  - {b: c}",
     "expected a path glob as text, got a mapping"),
    ("allowed_bots", "allowed_bots: [renovate, 'not a login']",
     "`not a login` is not a GitHub login"),
    ("allowed_bots", "allowed_bots: -dash", "`-dash` is not a GitHub login"),
    ("allow_forks", "allow_forks: sometimes", "expected `true` or `false`, got `sometimes`"),
    ("budget", "budget: lots", "`lots` is not a budget; write dollars like `$3`"),
    ("budget", "budget: $0", "a budget must be more than zero"),
    ("budget", "budget: $3, $4", "the budget names dollars twice"),
    ("budget", "budget: [$3]", "expected text, got a list"),
    ("budget", "budget: $2000000", "`$2000000` is more than the largest budget"),
    ("network", "network: [pypi.org]", "expected a mapping like `allow: [example.com]`"),
    ("network", "network:\n  deny: [x]", "unknown key `deny` under `network`; the keys are "
                                          "`allow`"),
    ("network", "network:\n  allow:\n    - pypi.org\n    - http://evil.example/",
     "`http://evil.example/` is not a host name"),
    ("profiles", "profiles: [backend]", "expected a mapping of profile names to their settings"),
    ("profiles", "profiles:\n  back end: {agent: codex}", "`back end` is not a profile name"),
    ("profiles", "profiles:\n  backend: codex", "expected a mapping of a profile's settings"),
]


@pytest.mark.parametrize(("key", "text", "message"), INVALID,
                         ids=[f"{key}-{n}" for n, (key, _, _) in enumerate(INVALID)])
def test_invalid_values_name_the_value_line_and_key(key: str, text: str, message: str) -> None:
    error = error_of("# agentbot\n" + text + "\n")
    assert error.key == key and message in error.message
    # The line of the value at fault: the last line, where an item of a list is wrong.
    assert error.line == (2 if "\n" not in text or "|" in text else text.count("\n") + 2)
    assert str(error) == f"`{CONFIG_PATH}`, line {error.line}, key `{key}`: {error.message}"


def test_every_key_has_invalid_cases() -> None:
    assert {key for key, _, _ in INVALID} == set(KEYS)


def test_setup_is_one_command_or_a_list() -> None:
    assert parse("setup: make deps && make\n").setup == ("make deps && make",)
    assert parse("setup: []\n").setup == ()
    assert parse("setup: |\n  set -e\n  make\n").setup == ("set -e\nmake",)


def test_protected_paths_and_bots_accept_one_value_or_a_list() -> None:
    assert parse("protected_paths: deploy/**\n").protected_paths == ("deploy/**",)
    assert parse("protected_paths: []\n").protected_paths == ()  # the default can be dropped
    assert parse("allowed_bots:\n  - renovate\n  - github-actions[bot]\n").allowed_bots == (
        "renovate", "github-actions[bot]")


def test_text_values_are_taken_as_written() -> None:
    config = parse("trigger_label: 2024\nmodel: 4\nagent: AIDER\ndraft: no\n"
                   "max_changed_files: 1_000\n")
    assert (config.trigger_label, config.model, config.agent) == ("2024", "4", "aider")
    assert config.draft is False and config.max_changed_files == 1000


def test_non_utf8_bytes_name_the_line_and_a_bom_is_fine() -> None:
    error = error_of(b"draft: true\nmodel: caf\xe9\n")
    assert error.line == 2 and "not UTF-8" in error.message
    assert parse(b"\xef\xbb\xbfdraft: false\n").draft is False


def test_config_error_text_without_line_or_key() -> None:
    assert str(ConfigError("too big")) == "`.github/agentbot.yml`: too big"
    error = ConfigError("x", path="other.yml", line=4)
    assert str(error) == "`other.yml`, line 4: x" and error.message == "x"


# effective


def test_defaults_come_from_the_operator(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(run_timeout="45m", trigger_label="bot", default_agent="codex",
                             max_changed_files=40)
    run = effective(RepoConfig(), settings)
    assert (run.trigger_label, run.agent, run.model) == ("bot", "codex", None)
    assert (run.timeout_seconds, run.max_changed_files, run.capped) == (2700, 40, ())
    assert run.draft is True and run.protected_paths == (".github/workflows/**",)
    assert run.allow_forks is False and run.setup == () and run.instructions == ""


def test_the_repo_overrides_within_the_limits(make_settings: Callable[..., Settings]) -> None:
    run = effective(parse(FULL), make_settings(run_timeout="2h", max_changed_files=50))
    assert (run.trigger_label, run.agent, run.model) == ("robot", "codex", "gpt-5-codex")
    assert (run.timeout_seconds, run.max_changed_files, run.capped) == (5400, 12, ())
    assert run.setup == ("pip install -e .", "make deps\nmake build")
    assert run.draft is False and run.allow_forks is True


def test_the_operator_caps_timeout_and_changed_files(
        make_settings: Callable[..., Settings]) -> None:
    config = parse("timeout: 3h\nmax_changed_files: 500\n")
    run = effective(config, make_settings(run_timeout="30m", max_changed_files=100))
    assert (run.timeout_seconds, run.max_changed_files) == (1800, 100)
    assert run.capped == ("timeout", "max_changed_files")
    exact = effective(parse("timeout: 30m\n"), make_settings(run_timeout="30m"))
    assert exact.timeout_seconds == 1800 and exact.capped == ()


def test_the_operator_caps_the_budget_each_limit_apart(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(max_run_budget="$5, 1M tokens")
    run = effective(parse("budget: $8, 200k tokens\n"), settings)
    assert run.budget == Budget(dollars=5.0, tokens=200_000) and run.capped == ("budget",)
    within = effective(parse("budget: $2\n"), settings)
    assert within.budget == Budget(dollars=2.0, tokens=1_000_000) and within.capped == ()
    assert effective(parse("draft: true\n"), settings).budget == Budget(5.0, 1_000_000)
    assert effective(parse("draft: true\n"), make_settings()).budget == Budget()


def test_the_command_agent_needs_the_operators_command(
        make_settings: Callable[..., Settings]) -> None:
    config = parse("draft: true\nagent: command\n")
    with pytest.raises(ConfigError) as caught:
        effective(config, make_settings())
    assert (caught.value.line, caught.value.key) == (2, "agent")
    assert "AGENTBOT_AGENT_COMMAND" in str(caught.value)
    run = effective(config, make_settings(agent_command="my-agent {prompt_file}"))
    assert run.agent == "command"


@pytest.mark.parametrize(("listed", "login", "allowed"), [
    (("dependabot",), "dependabot[bot]", True),
    (("dependabot[bot]",), "dependabot", True),
    (("Renovate[bot]",), "renovate[bot]", True),
    (("dependabot",), "dependabot-preview[bot]", False),
    (("dependabot",), "evil[bot]", False),
    ((), "dependabot[bot]", False),
])
def test_allowed_bots_matching(make_settings: Callable[..., Settings], listed: tuple[str, ...],
                               login: str, allowed: bool) -> None:
    run = effective(RepoConfig(allowed_bots=listed), make_settings())
    assert run.allows_bot(login) is allowed


@pytest.mark.parametrize(("text", "path"), [
    ("docs/agent.md", "docs/agent.md"), ("AGENTS.md", "AGENTS.md"), ("./notes.TXT", "notes.TXT"),
    ("/guide/prompt", "guide/prompt"), ("Keep changes small.", None), ("Refactor", None),
    ("use pathlib/os", None), ("https://example.com/guide.md", None), ("", None),
    ("one.md\ntwo.md", None),
])
def test_which_instructions_name_a_file(text: str, path: str | None) -> None:
    assert instructions_path(text) == path


# loading over HTTP


@pytest.fixture
def world(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_installation(INSTALLATION, "octo-org")
    fake_github.add_installation(OTHER_INSTALLATION, "other-org")
    return fake_github


def add_repo(world: FakeGitHub, files: dict[str, bytes], name: str = "hello-world",
             owner: str = "octo-org") -> None:
    world.add_repo(owner, name, files={"README.md": b"# hi\n", **files})


def commit(world: FakeGitHub, files: dict[str, bytes | None], repo: str = REPO) -> None:
    git = world.repo(repo).git
    head = git.commit_files(dict(files), git.refs["refs/heads/main"], "change",
                            world.state.person(world.bot_user))
    git.set_ref("refs/heads/main", head)


async def load_error(configs: RepoConfigs, repo: str = REPO, ref: str = "main") -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        await configs.load(INSTALLATION, repo, ref)
    return caught.value


async def test_a_missing_file_gives_the_defaults(world: FakeGitHub,
                                                 github_app: GitHubApp) -> None:
    add_repo(world, {})
    config = await RepoConfigs(github_app).load(INSTALLATION, REPO, "main")
    assert config.model_dump() == RepoConfig().model_dump()
    [call] = world.calls(CONTENTS)
    assert call.path == f"/repos/{REPO}/contents/.github/agentbot.yml" and call.status == 404
    assert call.query == {"ref": "main"}


async def test_the_file_is_read_at_the_ref_given(world: FakeGitHub,
                                                 github_app: GitHubApp) -> None:
    add_repo(world, {CONFIG_PATH: b"model: main-model\n"})
    git = world.repo(REPO).git
    other = git.commit_files({CONFIG_PATH: b"model: release-model\n"},
                             git.refs["refs/heads/main"], "release",
                             world.state.person(world.bot_user))
    git.set_ref("refs/heads/release/1.0", other)
    configs = RepoConfigs(github_app)
    assert (await configs.load(INSTALLATION, REPO, "release/1.0")).model == "release-model"
    assert (await configs.load(INSTALLATION, REPO, "main")).model == "main-model"


async def test_a_second_load_of_an_unchanged_file_is_a_304(world: FakeGitHub,
                                                           github_app: GitHubApp) -> None:
    add_repo(world, {CONFIG_PATH: b"timeout: 20m\ninstructions: docs/agent.md\n",
                     "docs/agent.md": b"Run the tests first.\n"})
    configs = RepoConfigs(github_app)
    first = await configs.load(INSTALLATION, REPO, "main")
    second = await configs.load(INSTALLATION, REPO, "main")
    assert first.timeout == second.timeout == 1200
    assert first.instructions == second.instructions == "Run the tests first."
    statuses = [(c.path.rsplit("/", 1)[-1], c.status) for c in world.calls(CONTENTS)]
    assert statuses == [("agentbot.yml", 200), ("agent.md", 200),
                        ("agentbot.yml", 304), ("agent.md", 304)]
    assert world.calls(CONTENTS)[2].headers["if-none-match"].startswith('W/"')
    # A change on the branch is a new ETag: a 200 with the new content.
    commit(world, {CONFIG_PATH: b"timeout: 25m\n"})
    assert (await configs.load(INSTALLATION, REPO, "main")).timeout == 1500
    assert world.calls(CONTENTS)[-1].status == 200


async def test_installations_do_not_share_cache_entries(world: FakeGitHub,
                                                        github_app: GitHubApp) -> None:
    add_repo(world, {CONFIG_PATH: b"model: secret-model\n"})
    add_repo(world, {CONFIG_PATH: b"model: theirs\n"}, owner="other-org")
    configs = RepoConfigs(github_app)
    assert (await configs.load(INSTALLATION, REPO, "main")).model == "secret-model"
    # The same URL through another installation, which GitHub does not let read this repo:
    # it must reach GitHub without the first installation's ETag, and see nothing.
    config = await configs.load(OTHER_INSTALLATION, REPO, "main")
    assert config.model is None
    assert await configs.load(OTHER_INSTALLATION, "other-org/hello-world", "main") == \
        parse("model: theirs\n")
    calls = world.calls(CONTENTS)
    assert [c.status for c in calls] == [200, 404, 200]
    assert all("if-none-match" not in c.headers for c in calls)


async def test_instructions_as_text_are_not_fetched(world: FakeGitHub,
                                                    github_app: GitHubApp) -> None:
    add_repo(world, {CONFIG_PATH: b"instructions: |\n  Use type hints.\n  Run docs/make.sh.\n"})
    config = await RepoConfigs(github_app).load(INSTALLATION, REPO, "main")
    assert config.instructions == "Use type hints.\nRun docs/make.sh."
    assert len(world.calls(CONTENTS)) == 1


async def test_instructions_from_a_file(world: FakeGitHub, github_app: GitHubApp) -> None:
    add_repo(world, {CONFIG_PATH: b"draft: true\ninstructions: ./AGENTS.md\n",
                     "AGENTS.md": "\ufeffUse type hints — always.\n\n".encode()})
    config = await RepoConfigs(github_app).load(INSTALLATION, REPO, "main")
    assert config.instructions == "Use type hints — always."
    assert world.calls(CONTENTS)[-1].path == f"/repos/{REPO}/contents/AGENTS.md"


async def test_a_missing_instructions_file(world: FakeGitHub, github_app: GitHubApp) -> None:
    add_repo(world, {CONFIG_PATH: b"draft: true\n\ninstructions: docs/agent.md\n"})
    error = await load_error(RepoConfigs(github_app))
    assert (error.line, error.key) == (3, "instructions")
    assert "`docs/agent.md` reads as a file path" in error.message
    assert "`main` has no such file" in error.message


@pytest.mark.parametrize(("value", "files", "message"), [
    ("../secrets.md", {}, "`../secrets.md` is outside the repository"),
    ("docs/guides", {"docs/guides/a.md": b"a\n"}, "`docs/guides` is a directory, not a file"),
    ("docs/latin1.md", {"docs/latin1.md": b"caf\xe9\n"}, "`docs/latin1.md` is not UTF-8 text"),
    ("docs/huge.md", {"docs/huge.md": b"x" * (1024 * 1024 + 1)},
     "`docs/huge.md` is larger than 1 MB"),
    ("docs/long.md", {"docs/long.md": b"x" * (64 * 1024 + 1)},
     "the instructions are longer than 64 KiB"),
])
async def test_unusable_instructions_files(world: FakeGitHub, github_app: GitHubApp,
                                           value: str, files: dict[str, bytes],
                                           message: str) -> None:
    add_repo(world, {CONFIG_PATH: f"instructions: {value}\n".encode(), **files})
    error = await load_error(RepoConfigs(github_app))
    assert (error.line, error.key) == (1, "instructions") and message in error.message


async def test_an_invalid_file_names_line_and_key(world: FakeGitHub,
                                                  github_app: GitHubApp) -> None:
    add_repo(world, {CONFIG_PATH: b"agent: claude\nsetup: make\ntimout: 20m\n"})
    error = await load_error(RepoConfigs(github_app))
    assert str(error).startswith("`.github/agentbot.yml`, line 3, key `timout`: unknown key")


@pytest.mark.parametrize(("files", "message"), [
    ({CONFIG_PATH: b"# " + b"x" * (1024 * 1024) + b"\n"},
     "the file is larger than 1 MB, the most GitHub's contents API serves"),
    ({CONFIG_PATH: b"model: caf\xe9\n"}, "the file is not UTF-8 text; save it as UTF-8"),
    ({CONFIG_PATH + "/oops.yml": b"draft: true\n"}, "the file is a directory, not a file"),
])
async def test_a_config_file_that_cannot_be_read(world: FakeGitHub, github_app: GitHubApp,
                                                 files: dict[str, bytes], message: str) -> None:
    add_repo(world, files)
    error = await load_error(RepoConfigs(github_app))
    assert error.message == message and error.key is None


async def test_other_github_errors_reach_the_caller(world: FakeGitHub,
                                                    github_app: GitHubApp) -> None:
    add_repo(world, {CONFIG_PATH: b"draft: true\n"})
    world.fail_next("GET", "/repos/{owner}/{repo}/contents/{path}", 403,
                    body={"message": "Resource not accessible by integration"})
    with pytest.raises(gidgethub.BadRequest) as caught:
        await RepoConfigs(github_app).load(INSTALLATION, REPO, "main")
    assert caught.value.status_code == 403


async def test_loads_asked_for_at_once_share_one_request(world: FakeGitHub,
                                                         github_app: GitHubApp) -> None:
    """A burst of triggers on one repository reads its config once, not once each."""
    add_repo(world, {CONFIG_PATH: b"timeout: 20m\n"})
    configs = RepoConfigs(github_app)
    await github_app.tokens.get(INSTALLATION)
    loaded = await asyncio.gather(*(configs.load(INSTALLATION, REPO, "main") for _ in range(20)))
    assert {config.timeout for config in loaded} == {1200}
    assert len(world.calls(CONTENTS)) == 1
    # Once that load has ended, the next one asks again (a change would be seen).
    commit(world, {CONFIG_PATH: b"timeout: 25m\n"})
    assert (await configs.load(INSTALLATION, REPO, "main")).timeout == 1500
    assert len(world.calls(CONTENTS)) == 2
