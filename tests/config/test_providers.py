"""Which provider each agent needs, and what the bot knows of the gateway's keys."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.config.providers import configured, missing_credentials, providers_for
from bot.config.settings import Settings


@pytest.mark.parametrize(("agent", "model", "needed"), [
    ("claude", None, ("anthropic",)),
    ("claude", "opus", ("anthropic",)),
    ("codex", "gpt-5-codex", ("openai",)),
    ("opencode", "anthropic/claude-sonnet-4-5", ("anthropic",)),
    ("opencode", "openai/gpt-5", ("openai",)),
    ("aider", "sonnet", ("anthropic",)),
    ("aider", "o3-mini", ("openai",)),
    ("aider", "openrouter/some-model", ("anthropic", "openai")),
    ("opencode", None, ("anthropic", "openai")),
    ("command", None, ()),
])
def test_providers_for(agent: str, model: str | None, needed: tuple[str, ...]) -> None:
    assert providers_for(agent, model) == needed


def test_a_gateway_apart_with_no_declaration_is_not_second_guessed(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(executor="kubernetes", model_providers=None)
    assert configured(settings) is None
    assert missing_credentials(settings, "claude", None) is None


def test_a_declared_gateway_is_checked_and_the_reply_says_where_to_declare(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(executor="kubernetes", model_providers="OpenAI")
    assert configured(settings) == {"openai"}
    assert missing_credentials(settings, "codex", None) is None
    reason = missing_credentials(settings, "claude", None)
    assert reason is not None and reason.endswith(
        "list the provider in `AGENTBOT_MODEL_PROVIDERS` for the bot")


def test_either_key_serves_an_agent_whose_model_names_no_provider(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(model_providers=None)
    reason = missing_credentials(settings, "opencode", "mystery-model")
    assert reason == (
        "the `opencode` agent needs a key for Anthropic or OpenAI (the model `mystery-model` "
        "names neither), and the operator has not given agentbot's gateway either: set "
        "`ANTHROPIC_API_KEY` or `CLAUDE_CODE_OAUTH_TOKEN` or `OPENAI_API_KEY` or "
        "`CODEX_API_KEY` in the gateway's environment")
    assert missing_credentials(make_settings(model_providers=None, openai_api_key="sk-x"),
                               "opencode", "mystery-model") is None


def test_an_unknown_provider_is_a_start_up_problem(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValueError, match="unknown provider 'azure'"):
        make_settings(model_providers="anthropic,azure")
