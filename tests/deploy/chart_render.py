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


@functools.cache
def rendered(name: str) -> tuple[dict[str, str], tuple[dict[str, Any], ...]]:
    """The rendered files and the objects of one values file, rendered once per session."""
    files = render(values_of(name))
    objects = tuple(
        doc
        for path, text in sorted(files.items())
        if path.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    )
    return files, objects


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


def bot_container(name: str) -> dict[str, Any]:
    """The Deployment's only container."""
    containers = one(name, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["agentbot"]
    return containers[0]


def env_of(name: str) -> dict[str, dict[str, Any]]:
    """The bot container's environment, by variable name."""
    return {item["name"]: item for item in bot_container(name)["env"]}


def render_error(overrides: dict[str, Any]) -> str:
    """The message Helm fails with for these values."""
    with pytest.raises(helm.HelmError) as caught:
        render(overrides)
    return str(caught.value)
