"""The chart's launch and GitHub-pacing limits and the ports' connection guard, rendered by
Helm, reach the bot's container as settings the bot accepts; the schema refuses values past
GitHub's own limits."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from bot.config.settings import Settings
from tests.deploy.chart_render import objects_in, render, values_of

VARIABLES = {
    "maxParallelLaunches": ("AGENTBOT_MAX_PARALLEL_LAUNCHES", "max_parallel_launches"),
    "maxVariants": ("AGENTBOT_MAX_VARIANTS", "max_variants"),
    "githubWritesPerMinute": ("AGENTBOT_GITHUB_WRITES_PER_MINUTE", "github_writes_per_minute"),
    "githubWritesPerHour": ("AGENTBOT_GITHUB_WRITES_PER_HOUR", "github_writes_per_hour"),
    "maxConnections": ("AGENTBOT_MAX_CONNECTIONS", "max_connections"),
    "headerTimeout": ("AGENTBOT_HEADER_TIMEOUT", "header_timeout"),
}


def bot_env(values: dict[str, Any]) -> dict[str, str]:
    [container] = [c for o in objects_in(render(values)) if o["kind"] == "Deployment"
                   for c in o["spec"]["template"]["spec"]["containers"]
                   if c["name"] == "agentbot"]
    return {item["name"]: item["value"] for item in container["env"] if "value" in item}


def with_config(**config: Any) -> dict[str, Any]:
    values = values_of("default")
    values["config"] = {**values.get("config", {}), **config}
    return values


def test_the_defaults_are_the_bots_own() -> None:
    env = bot_env(values_of("default"))
    defaults = Settings()  # type: ignore[call-arg]
    for variable, field in VARIABLES.values():
        given = Settings(**{variable: env[variable]})  # type: ignore[arg-type]
        assert getattr(given, field) == getattr(defaults, field), variable


def test_chosen_values_reach_the_bot() -> None:
    env = bot_env(with_config(maxParallelLaunches=40, githubWritesPerMinute=60,
                              githubWritesPerHour=400, maxConnections=300,
                              headerTimeout="30s", maxVariants=3))
    settings = Settings(**{v: env[v] for v, _ in VARIABLES.values()})  # type: ignore[arg-type]
    assert (settings.max_parallel_launches, settings.github_writes_per_minute,
            settings.github_writes_per_hour, settings.max_connections,
            settings.header_timeout, settings.max_variants) == (40, 60, 400, 300, 30, 3)


@pytest.mark.parametrize("config", [{"githubWritesPerMinute": 81}, {"maxVariants": 21},
                                    {"maxVariants": 0},
                                    {"githubWritesPerHour": 501},
                                    {"maxParallelLaunches": 0},
                                    {"headerTimeout": "soon"}])
def test_the_schema_refuses_values_past_githubs_limits_or_nonsense(
        config: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(with_config(**config))
    assert next(iter(config)) in str(caught.value)
