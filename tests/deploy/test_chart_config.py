"""The chart's configuration of the bot and its network policies, read from rendered objects."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config.settings import Settings
from bot.executors.manifests import SANDBOX_SELECTOR
from tests.deploy.chart_render import (
    CHART,
    NAMESPACE,
    RELEASE,
    VALUES_FILES,
    bot_container,
    env_of,
    objects_of,
    one,
    rendered,
    values_of,
)

# --- Configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_every_variable_is_a_setting_the_bot_reads(name: str) -> None:
    aliases = {field.alias for field in Settings.model_fields.values() if field.alias}
    assert set(env_of(name)) <= aliases


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_secrets_come_from_secret_references_only(name: str) -> None:
    env = env_of(name)
    values = values_of(name)
    github_secret = values["github"]["existingSecret"]
    for variable in ("GITHUB_APP_ID", "GITHUB_WEBHOOK_SECRET"):
        assert "value" not in env[variable]
        assert env[variable]["valueFrom"]["secretKeyRef"]["name"] == github_secret
    assert "GITHUB_PRIVATE_KEY" not in env
    key_path = Path(env["GITHUB_PRIVATE_KEY_PATH"]["value"])
    pod = one(name, "Deployment")["spec"]["template"]["spec"]
    mount = next(
        m for m in bot_container(name)["volumeMounts"] if m["mountPath"] == str(key_path.parent)
    )
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == github_secret
    assert volume["secret"]["items"] == [{"key": "GITHUB_PRIVATE_KEY", "path": key_path.name}]
    assert not [o for o in rendered(name)[1] if o["kind"] == "Secret"]


def test_sqlite_by_default_on_a_claim() -> None:
    env = env_of("default")
    url = env["AGENTBOT_DATABASE_URL"]["value"]
    assert url.startswith("sqlite+aiosqlite:////")
    database_dir = str(Path(url.removeprefix("sqlite+aiosqlite:///")).parent)
    claim = one("default", "PersistentVolumeClaim")
    pod = one("default", "Deployment")["spec"]["template"]["spec"]
    mount = next(m for m in bot_container("default")["volumeMounts"]
                 if m["mountPath"] == database_dir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    deployment = one("default", "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_production_reads_postgresql_from_its_secret() -> None:
    env = env_of("production")
    assert env["AGENTBOT_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "agentbot-database", "key": "url",
    }
    assert objects_of("production", "PersistentVolumeClaim") == []
    deployment = one("production", "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert "strategy" not in deployment["spec"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "ghcr.io/example/agentbot@sha256:"
        "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
    )


def test_settings_parse_the_rendered_environment() -> None:
    env = {
        name: item["value"] for name, item in env_of("default").items() if "value" in item
    }
    settings = Settings(_env_file=None, **env)  # type: ignore[call-arg]
    assert settings.executor_name == "kubernetes"
    assert settings.namespace == NAMESPACE
    assert settings.runtime_class == "gvisor"
    assert settings.run_timeout == 1800
    assert settings.max_result_bytes == 20 * 1024 * 1024
    assert settings.sandbox_image == "ghcr.io/agentbot/agentbot-sandbox:0.1.0"


def test_sandboxes_call_back_through_the_internal_service() -> None:
    url = env_of("default")["AGENTBOT_INTERNAL_URL"]["value"]
    internal = one("default", "Service", f"{RELEASE}-internal")
    port = internal["spec"]["ports"]
    assert port == [{"name": "internal", "port": 8081, "targetPort": "internal",
                     "protocol": "TCP"}]
    assert url == f"http://{RELEASE}-internal.{NAMESPACE}.svc.cluster.local:8081"
    public = one("default", "Service", RELEASE)
    assert [p["targetPort"] for p in public["spec"]["ports"]] == ["http"]
    container_ports = {p["name"]: p["containerPort"] for p in bot_container("default")["ports"]}
    assert container_ports == {"http": 8080, "internal": 8081}


def test_production_routes_only_the_webhook_through_the_ingress() -> None:
    ingress = one("production", "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "agentbot.example.com"
    assert [(p["path"], p["backend"]["service"]["name"]) for p in rule["http"]["paths"]] == [
        ("/webhook", RELEASE),
    ]
    assert env_of("production")["AGENTBOT_PUBLIC_URL"]["value"] == "https://agentbot.example.com"


def test_production_creates_the_gvisor_runtime_class() -> None:
    runtime_class = one("production", "RuntimeClass")
    assert runtime_class["handler"] == "runsc"
    assert runtime_class["metadata"]["name"] == env_of("production")[
        "AGENTBOT_RUNTIME_CLASS"]["value"] == "gvisor"
    assert env_of("production")["AGENTBOT_AGENT_SECRET"]["value"] == "agentbot-agents"


# --- Network policies -----------------------------------------------------------------------


def _sandbox_policy(name: str) -> dict[str, Any]:
    return one(name, "NetworkPolicy", f"{RELEASE}-sandbox")["spec"]


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_sandbox_policy_selects_the_executors_pods(name: str) -> None:
    selector = dict(pair.split("=") for pair in SANDBOX_SELECTOR.split(","))
    policy = _sandbox_policy(name)
    assert policy["podSelector"] == {"matchLabels": selector}
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["ingress"] == []


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_sandbox_egress_is_dns_the_bot_and_the_allowed_cidrs(name: str) -> None:
    values = values_of(name).get("sandbox", {}).get("networkPolicy", {})
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["sandbox"]["networkPolicy"]
    expected_cidrs = values.get("githubCidrs", defaults["githubCidrs"]) + values.get(
        "agentApiCidrs", defaults["agentApiCidrs"])
    dns, bot, cidrs, *extra = _sandbox_policy(name)["egress"]

    assert dns["to"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }]
    assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [(53, "TCP"), (53, "UDP")]

    bot_pods = one(name, "Deployment")["spec"]["selector"]
    assert bot["to"] == [{"podSelector": bot_pods}]
    assert bot["ports"] == [{"port": 8081, "protocol": "TCP"}]

    assert [peer["ipBlock"]["cidr"] for peer in cidrs["to"]] == expected_cidrs
    assert cidrs["ports"] == [{"port": 443, "protocol": "TCP"}]
    for cidr in expected_cidrs:
        ipaddress.ip_network(cidr)  # a typo here would silently block the sandbox
    assert extra == values.get("extraEgress", [])


def test_default_cidrs_are_githubs_and_the_agent_apis() -> None:
    cidrs = {p["ipBlock"]["cidr"] for p in _sandbox_policy("default")["egress"][2]["to"]}
    assert {"140.82.112.0/20", "192.30.252.0/22", "185.199.108.0/22", "143.55.64.0/20"} <= cidrs
    assert "160.79.104.0/23" in cidrs  # api.anthropic.com, for the default agent


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_bot_policy_admits_its_two_ports_only(name: str) -> None:
    policy = one(name, "NetworkPolicy", RELEASE)["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    http, internal = policy["ingress"]
    assert http["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert internal["ports"] == [{"port": "internal", "protocol": "TCP"}]
    sandbox_peer = {"podSelector": {"matchLabels": _sandbox_policy(name)["podSelector"][
        "matchLabels"]}}
    assert internal["from"][0] == sandbox_peer
    assert internal["from"][1:] == values_of(name).get("networkPolicy", {}).get("internalFrom", [])
