"""`agents.providers`: the bot learns which keys the gateway has, never the keys."""

from __future__ import annotations

import pytest

from bot.config.providers import configured, missing_credentials
from bot.config.settings import Settings
from tests.deploy.chart_render import RELEASE, objects_in, render, values_of


def _bot_env(providers: list[str] | None, *, with_secrets: bool = False) -> dict[str, str]:
    """The bot container's plain values (every variable's name with `with_secrets`)."""
    values = values_of("default")
    values["agents"] = {**values.get("agents", {}), "existingSecret": "agentbot-agents"}
    if providers is not None:
        values["agents"]["providers"] = providers
    [bot] = [obj for obj in objects_in(render(values))
             if obj["kind"] == "Deployment" and obj["metadata"]["name"] == RELEASE]
    [container] = [c for c in bot["spec"]["template"]["spec"]["containers"]
                   if c["name"] == "agentbot"]
    return {item["name"]: item.get("value", "") for item in container["env"]
            if with_secrets or "value" in item}


def test_listed_providers_reach_the_bot_and_turn_its_check_on() -> None:
    names = _bot_env(["anthropic"], with_secrets=True)
    assert not {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "OPENAI_API_KEY"} & set(names)
    env = _bot_env(["anthropic"])
    assert env["AGENTBOT_MODEL_PROVIDERS"] == "anthropic"
    settings = Settings(_env_file=None, **env)  # type: ignore[call-arg]
    assert configured(settings) == {"anthropic"}
    assert missing_credentials(settings, "claude", None) is None
    assert "`OPENAI_API_KEY`" in (missing_credentials(settings, "codex", None) or "")


def test_without_the_list_the_bot_leaves_the_check_to_the_gateway() -> None:
    env = _bot_env(None)
    assert "AGENTBOT_MODEL_PROVIDERS" not in env
    settings = Settings(_env_file=None, **env)  # type: ignore[call-arg]
    assert configured(settings) is None


def test_an_unknown_provider_is_refused_by_the_schema() -> None:
    with pytest.raises(Exception, match="(?i)providers"):
        _bot_env(["azure"])
