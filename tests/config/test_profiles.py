"""`profiles:` in `.github/agentbot.yml`: parsed with lines, applied over the top level, and
their files read with the config."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.config.loader import RepoConfigs
from bot.config.repo import (
    CONFIG_PATH,
    ConfigError,
    UnknownProfile,
    effective,
    parse,
    with_profile,
)
from bot.config.settings import Settings
from bot.github.client import GitHubApp
from tests.config.test_repo import INSTALLATION, REPO, add_repo, load_error, world
from tests.fakes.github import FakeGitHub

__all__ = ["world"]  # the loading tests' fixture

TEXT = """\
agent: claude
model: opus
setup: [make deps]
instructions: Keep the changelog.
timeout: 20m
profiles:
  backend:
    agent: codex
    setup: [make backend]
    instructions: Run the API tests.
    system_prompt: ./docs/agents/backend.md
    timeout: 2h
  Docs:
    model: haiku
  plain:
"""


def test_profiles_parse_with_the_lines_of_their_values() -> None:
    config = parse(TEXT)
    backend, docs, plain = config.profiles
    assert (backend.name, backend.agent, backend.setup, backend.timeout) == (
        "backend", "codex", ("make backend",), 7200)
    assert backend.system_prompt == "docs/agents/backend.md"
    assert (backend.line_of("system_prompt"), backend.line_of("timeout")) == (11, 12)
    assert (docs.name, docs.model, docs.setup) == ("docs", "haiku", None)
    assert (plain.name, plain.agent) == ("plain", None)


@pytest.mark.parametrize(("text", "line", "key", "message"), [
    ("profiles:\n  a:\n    agnt: codex\n", 3, "profiles.a.agnt",
     "unknown key `agnt` in profile `a` (did you mean `agent`?); a profile's keys are "
     "`agent`, `model`, `setup`, `instructions`, `system_prompt`, `timeout`"),
    ("profiles:\n  a:\n    timeout: soon\n", 3, "profiles.a.timeout", "`soon` is not a duration"),
    ("profiles:\n  a:\n    system_prompt: [a.md]\n", 3, "profiles.a.system_prompt",
     "expected text, got a list"),
    ("profiles:\n  a:\n    system_prompt: https://x.test/p.md\n", 3,
     "profiles.a.system_prompt", "expected the path of a file in the repository"),
    ("profiles:\n  a: {}\n  A: {}\n", 3, "profiles",
     "profile `A` is given twice (first on line 2)"),
])
def test_a_profiles_errors_name_the_line_and_the_key_inside(text: str, line: int, key: str,
                                                             message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    error = caught.value
    assert (error.line, error.key) == (line, key) and message in error.message
    assert str(error).startswith(f"`{CONFIG_PATH}`, line {line}, key `{key}`: ")


def test_a_profile_replaces_agent_setup_and_timeout_and_adds_its_instructions(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(run_timeout=3600)
    base = effective(parse(TEXT), settings)
    backend = with_profile(base, "BACKEND", settings)
    assert (backend.profile, backend.agent, backend.setup) == ("backend", "codex",
                                                               ("make backend",))
    # Another agent does not inherit the top level's model; the operator's limit caps 2h.
    assert (backend.model, backend.timeout_seconds, backend.capped) == (None, 3600,
                                                                        ("timeout",))
    assert backend.instructions == "Keep the changelog.\n\nRun the API tests."
    assert backend.system_prompt == "docs/agents/backend.md"  # the loader reads the file
    docs = with_profile(base, "docs", settings)
    assert (docs.agent, docs.model, docs.setup, docs.timeout_seconds) == (
        "claude", "haiku", ("make deps",), 1200)
    plain = with_profile(base, "plain", settings)
    assert (plain.agent, plain.model, plain.instructions) == ("claude", "opus",
                                                              "Keep the changelog.")


def test_a_profiles_variants_are_capped_by_the_operator(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(max_variants=4)
    base = effective(parse("profiles:\n  trio:\n    variants: 3\n  many:\n    variants: 9\n"
                           "  one:\n"), settings)
    assert base.variants == 1
    assert with_profile(base, "trio", settings).variants == 3
    many = with_profile(base, "many", settings)
    assert (many.variants, many.capped) == (4, ("variants",))
    assert with_profile(base, "one", settings).variants == 1


@pytest.mark.parametrize("value", ["0", "-2", "three", "[2]", "2.5"])
def test_a_profiles_variants_must_be_a_count(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(f"profiles:\n  a:\n    variants: {value}\n")
    assert (caught.value.line, caught.value.key) == (3, "profiles.a.variants")


def test_variants_is_a_profiles_key_only() -> None:
    with pytest.raises(ConfigError) as caught:
        parse("variants: 3\n")
    assert caught.value.key == "variants" and "unknown key" in caught.value.message


def test_an_unknown_profile_names_the_ones_there_are(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    with pytest.raises(UnknownProfile) as caught:
        with_profile(effective(parse(TEXT), settings), "frontend", settings)
    assert str(caught.value) == ("there is no profile `frontend` in `.github/agentbot.yml`; "
                                 "its profiles are `backend`, `docs`, `plain`")
    with pytest.raises(UnknownProfile, match="it has no `profiles`"):
        with_profile(effective(parse("agent: codex\n"), settings), "frontend", settings)


def test_a_profile_with_the_command_agent_needs_the_operators_command(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(agent_command=None)
    config = effective(parse("profiles:\n  script:\n    agent: command\n"), settings)
    with pytest.raises(ConfigError) as caught:
        with_profile(config, "script", settings)
    assert (caught.value.line, caught.value.key) == (3, "profiles.script.agent")


async def test_the_loader_reads_each_profiles_files(world: FakeGitHub,  # noqa: F811
                                                    github_app: GitHubApp) -> None:
    add_repo(world, {CONFIG_PATH: TEXT.encode(),
                     "docs/agents/backend.md": "\ufeffYou serve the backend team.\n".encode()})
    config = await RepoConfigs(github_app).load(INSTALLATION, REPO, "main")
    [backend] = [profile for profile in config.profiles if profile.name == "backend"]
    assert backend.system_prompt == "You serve the backend team."
    assert backend.instructions == "Run the API tests."


@pytest.mark.parametrize(("files", "message"), [
    ({}, "`docs/agents/backend.md` is not a file at `main`; commit it, or fix the path"),
    ({"docs/agents/backend.md": b"x" * (64 * 1024 + 1)},
     "the system prompt is longer than 64 KiB"),
    ({"docs/agents/backend.md/x.md": b"x"}, "`docs/agents/backend.md` is a directory"),
])
async def test_an_unusable_system_prompt_file_names_its_line_and_key(
        world: FakeGitHub, github_app: GitHubApp,  # noqa: F811
        files: dict[str, bytes], message: str) -> None:
    add_repo(world, {CONFIG_PATH: TEXT.encode(), **files})
    error = await load_error(RepoConfigs(github_app))
    assert (error.line, error.key) == (11, "profiles.backend.system_prompt")
    assert message in error.message
