"""The chart rendered by Helm's SDK once per session, and lookups into what it rendered."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.fakes.kubeapi import K8S_VERSION

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "agentbot"
# The Kubernetes version the chart is validated for: the one the Kubernetes double serves.
KUBERNETES_VERSION = f"{K8S_VERSION}.0"
RELEASE = "agentbot"
NAMESPACE = "agentbot-system"
VALUES_FILES = {
    "default": CHART / "ci" / "default-values.yaml",
    "production": CHART / "ci" / "production-values.yaml",
}


def values_of(name: str) -> dict[str, Any]:
    """The values file `name` ("default" or "production") as a dict."""
    loaded = yaml.safe_load(VALUES_FILES[name].read_text())
    assert isinstance(loaded, dict)
    return loaded


@functools.cache
def _chart() -> helm.Chart:
    # Loaded once per session; charts are immutable in helm-python and released at exit.
    return helm.Chart.load(CHART)


def render(overrides: dict[str, Any]) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would print it."""
    return _chart().render(overrides, name=RELEASE, namespace=NAMESPACE, is_install=True)


def objects_in(files: dict[str, str]) -> tuple[dict[str, Any], ...]:
    """The Kubernetes objects of rendered files, in the order of their paths."""
    return tuple(
        doc
        for path, text in sorted(files.items())
        if path.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    )


@functools.cache
def rendered(name: str) -> tuple[dict[str, str], tuple[dict[str, Any], ...]]:
    """The rendered files and the objects of one values file, rendered once per session."""
    files = render(values_of(name))
    return files, objects_in(files)


def objects_of(name: str, kind: str) -> list[dict[str, Any]]:
    """Every rendered object of one kind."""
    return [obj for obj in rendered(name)[1] if obj["kind"] == kind]


def one(name: str, kind: str, object_name: str | None = None) -> dict[str, Any]:
    """The one rendered object of a kind (and name); fails when there is not exactly one."""
    matches = [
        obj for obj in objects_of(name, kind)
        if object_name is None or obj["metadata"]["name"] == object_name
    ]
    assert len(matches) == 1, f"expected one {kind} {object_name or ''} in {name}"
    return matches[0]


def gateway_is_standalone(name: str) -> bool:
    """Whether the values file asks for PostgreSQL, and so for a Deployment of the gateway's own
    (with SQLite, the gateway is a container of the bot's pod)."""
    return bool(values_of(name).get("postgresql", {}).get("enabled", False))


def bot_deployment(name: str) -> dict[str, Any]:
    return one(name, "Deployment", RELEASE)


def bot_pod(name: str) -> dict[str, Any]:
    """The pod spec of the bot's Deployment."""
    return bot_deployment(name)["spec"]["template"]["spec"]


def _container(pod: dict[str, Any], container_name: str) -> dict[str, Any]:
    matches = [c for c in pod["containers"] if c["name"] == container_name]
    assert len(matches) == 1, f"expected one container {container_name}"
    return matches[0]


def bot_container(name: str) -> dict[str, Any]:
    """The bot's container, `agentbot`, of the bot's Deployment."""
    return _container(bot_pod(name), "agentbot")


def env_of(name: str) -> dict[str, dict[str, Any]]:
    """The bot container's environment, by variable name."""
    return {item["name"]: item for item in bot_container(name)["env"]}


def gateway_deployment_of(name: str) -> dict[str, Any]:
    """The one Deployment whose pods run a `gateway` container, whichever it is."""
    matches = [
        obj for obj in objects_of(name, "Deployment")
        if any(c["name"] == "gateway" for c in obj["spec"]["template"]["spec"]["containers"])
    ]
    assert len(matches) == 1, f"expected one Deployment running the gateway in {name}"
    return matches[0]


def gateway_container(name: str) -> dict[str, Any]:
    return _container(gateway_deployment_of(name)["spec"]["template"]["spec"], "gateway")


def gateway_env_of(name: str) -> dict[str, dict[str, Any]]:
    """The gateway container's environment, by variable name."""
    return {item["name"]: item for item in gateway_container(name)["env"]}


def selects(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector selects an object with these labels."""
    return all(labels.get(key) == value for key, value in match_labels.items())


def render_error(overrides: dict[str, Any]) -> str:
    """The message Helm fails with for these values."""
    with pytest.raises(helm.HelmError) as caught:
        render(overrides)
    return str(caught.value)
