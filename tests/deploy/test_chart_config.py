"""The chart's configuration of the bot and its network policies, read from rendered objects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config.settings import Settings
from bot.executors.manifests import SANDBOX_SELECTOR
from bot.gateway.hosts import compile_patterns
from tests.deploy.chart_render import (
    NAMESPACE,
    RELEASE,
    VALUES_FILES,
    bot_container,
    bot_deployment,
    bot_pod,
    env_of,
    gateway_container,
    gateway_deployment_of,
    gateway_env_of,
    gateway_is_standalone,
    objects_in,
    objects_of,
    one,
    render,
    rendered,
    selects,
    values_of,
)

GATEWAY = f"{RELEASE}-gateway"
SETTING_ALIASES = {field.alias for field in Settings.model_fields.values() if field.alias}
SANDBOX_LABELS = dict(pair.split("=") for pair in SANDBOX_SELECTOR.split(","))
SANDBOX_PEER = {"podSelector": {"matchLabels": SANDBOX_LABELS}}

# --- Configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_every_variable_is_a_setting_the_bot_reads(name: str) -> None:
    assert set(env_of(name)) <= SETTING_ALIASES
    # Gone with the gateway: sandboxes no longer get the agents' Secret.
    assert "AGENTBOT_AGENT_SECRET" not in env_of(name)


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_every_gateway_variable_is_a_setting_it_reads(name: str) -> None:
    assert set(gateway_env_of(name)) <= SETTING_ALIASES


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
    mount = next(
        m for m in bot_container(name)["volumeMounts"] if m["mountPath"] == str(key_path.parent)
    )
    volume = next(v for v in bot_pod(name)["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == github_secret
    assert volume["secret"]["items"] == [{"key": "GITHUB_PRIVATE_KEY", "path": key_path.name}]
    assert not [o for o in rendered(name)[1] if o["kind"] == "Secret"]


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_the_gateway_reads_the_app_key_as_the_bot_does_but_no_webhook_secret(name: str) -> None:
    env = gateway_env_of(name)
    github_secret = values_of(name)["github"]["existingSecret"]
    assert "GITHUB_WEBHOOK_SECRET" not in env
    assert "GITHUB_PRIVATE_KEY" not in env
    for variable in ("GITHUB_APP_ID", "GITHUB_API_URL", "GITHUB_PRIVATE_KEY_PATH"):
        assert env[variable] == env_of(name)[variable]
    key_path = Path(env["GITHUB_PRIVATE_KEY_PATH"]["value"])
    mount = next(m for m in gateway_container(name)["volumeMounts"]
                 if m["mountPath"] == str(key_path.parent))
    assert mount["readOnly"] is True
    pod = gateway_deployment_of(name)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    # Only the private key, never the whole Secret (which holds the webhook secret too).
    assert volume["secret"] == {
        "secretName": github_secret, "defaultMode": 0o440,
        "items": [{"key": "GITHUB_PRIVATE_KEY", "path": key_path.name}],
    }
    refs = [source["secretRef"]["name"] for source in gateway_container(name).get("envFrom", [])]
    assert github_secret not in refs


def test_sqlite_by_default_on_a_claim() -> None:
    env = env_of("default")
    url = env["AGENTBOT_DATABASE_URL"]["value"]
    assert url.startswith("sqlite+aiosqlite:////")
    database_dir = str(Path(url.removeprefix("sqlite+aiosqlite:///")).parent)
    claim = one("default", "PersistentVolumeClaim")
    mount = next(m for m in bot_container("default")["volumeMounts"]
                 if m["mountPath"] == database_dir)
    volume = next(v for v in bot_pod("default")["volumes"] if v["name"] == mount["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    deployment = bot_deployment("default")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_production_reads_postgresql_from_its_secret() -> None:
    env = env_of("production")
    assert env["AGENTBOT_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "agentbot-database", "key": "url",
    }
    assert objects_of("production", "PersistentVolumeClaim") == []
    deployment = bot_deployment("production")
    assert deployment["spec"]["replicas"] == 3
    assert "strategy" not in deployment["spec"]
    assert bot_container("production")["image"] == (
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
    gateway = f"{GATEWAY}.{NAMESPACE}.svc.cluster.local"
    assert settings.sandbox_gateway_url == f"http://{gateway}:8082"
    assert settings.sandbox_proxy_url == f"http://{gateway}:8083"


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
    # The gateway's ports belong to the gateway's Service only, even when it shares this pod.
    for service in (internal, public):
        assert not {p["name"] for p in service["spec"]["ports"]} & {"gateway", "gateway-proxy"}


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


# --- The gateway ----------------------------------------------------------------------------


def _gateway_pod_labels(name: str) -> dict[str, str]:
    return gateway_deployment_of(name)["spec"]["template"]["metadata"]["labels"]


def _gateway_values(name: str) -> dict[str, Any]:
    return values_of(name).get("gateway", {})


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_the_gateway_runs_where_it_can_open_the_database(name: str) -> None:
    bot_env = env_of(name)
    env = gateway_env_of(name)
    # The same database as the bot, read the same way.
    assert env["AGENTBOT_DATABASE_URL"] == bot_env["AGENTBOT_DATABASE_URL"]
    deployment = gateway_deployment_of(name)
    containers = [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    if gateway_is_standalone(name):
        # PostgreSQL: a Deployment of its own, and the bot's pod runs the bot alone.
        assert deployment["metadata"]["name"] == GATEWAY
        assert containers == ["gateway"]
        assert [c["name"] for c in bot_pod(name)["containers"]] == ["agentbot"]
        assert deployment["spec"]["replicas"] == _gateway_values(name)["replicaCount"] == 2
        assert deployment["spec"]["selector"]["matchLabels"][
            "app.kubernetes.io/component"] == "gateway"
        assert "valueFrom" in env["AGENTBOT_DATABASE_URL"]
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert not [v for v in volumes if "persistentVolumeClaim" in v]
    else:
        # SQLite: beside the bot, on the bot's volume, at the path the database URL names.
        assert deployment is bot_deployment(name)
        assert containers == ["agentbot", "gateway"]
        assert [o["metadata"]["name"] for o in objects_of(name, "Deployment")] == [RELEASE]
        url = env["AGENTBOT_DATABASE_URL"]["value"]
        database_dir = str(Path(url.removeprefix("sqlite+aiosqlite:///")).parent)
        bot_mount = next(m for m in bot_container(name)["volumeMounts"]
                         if m["mountPath"] == database_dir)
        gateway_mount = next(m for m in gateway_container(name)["volumeMounts"]
                             if m["mountPath"] == database_dir)
        assert gateway_mount["name"] == bot_mount["name"]
        assert gateway_mount.get("readOnly", False) is False  # SQLite locks beside the file


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_the_gateway_service_reaches_the_gateway_containers(name: str) -> None:
    service = one(name, "Service", GATEWAY)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "gateway", "port": 8082, "targetPort": "gateway", "protocol": "TCP"},
        {"name": "gateway-proxy", "port": 8083, "targetPort": "gateway-proxy",
         "protocol": "TCP"},
    ]
    container_ports = {p["name"]: p["containerPort"] for p in gateway_container(name)["ports"]}
    assert container_ports == {"gateway": 8082, "gateway-proxy": 8083}
    # It selects exactly the pods that run the gateway.
    selector = service["spec"]["selector"]
    for deployment in objects_of(name, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        runs_gateway = deployment is gateway_deployment_of(name)
        assert selects(selector, labels) is runs_gateway, deployment["metadata"]["name"]
    # Sandbox pods carry the release-independent labels only; the Service must not match them.
    assert not selects(selector, SANDBOX_LABELS)


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_the_bot_tells_sandboxes_where_the_gateway_is(name: str) -> None:
    env = env_of(name)
    ports = {p["name"]: p["port"] for p in one(name, "Service", GATEWAY)["spec"]["ports"]}
    host = f"{GATEWAY}.{NAMESPACE}.svc.cluster.local"
    assert env["AGENTBOT_GATEWAY_URL"] == {
        "name": "AGENTBOT_GATEWAY_URL", "value": f"http://{host}:{ports['gateway']}"}
    assert env["AGENTBOT_GATEWAY_PROXY_URL"] == {
        "name": "AGENTBOT_GATEWAY_PROXY_URL", "value": f"http://{host}:{ports['gateway-proxy']}"}


def test_the_gateway_urls_follow_the_service_ports_and_cluster_domain() -> None:
    values = {**values_of("default"), "clusterDomain": "corp.internal",
              "gateway": {"service": {"port": 9000, "proxyPort": 9001}}}
    deployment = next(
        doc for doc in _documents(render(values)) if doc["metadata"]["name"] == RELEASE
        and doc["kind"] == "Deployment")
    bot = next(c for c in deployment["spec"]["template"]["spec"]["containers"]
               if c["name"] == "agentbot")
    env = {item["name"]: item.get("value") for item in bot["env"]}
    host = f"{GATEWAY}.{NAMESPACE}.svc.corp.internal"
    assert env["AGENTBOT_GATEWAY_URL"] == f"http://{host}:9000"
    assert env["AGENTBOT_GATEWAY_PROXY_URL"] == f"http://{host}:9001"


def _documents(files: dict[str, str]) -> Iterator[dict[str, Any]]:
    for path, text in sorted(files.items()):
        if path.endswith(".yaml"):
            yield from (doc for doc in yaml.safe_load_all(text) if doc)


def _secret_names(value: Any) -> Iterator[str]:
    """Every Secret a pod spec (or part of one) names, wherever it names it."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in {"secretRef", "secretKeyRef"}:
                yield item["name"]
            elif key == "secret":
                yield item["secretName"]
            else:
                yield from _secret_names(item)
    elif isinstance(value, list):
        for item in value:
            yield from _secret_names(item)


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_the_agents_secret_reaches_the_gateway_container_only(name: str) -> None:
    agents_secret = values_of(name).get("agents", {}).get("existingSecret", "")
    gateway = gateway_container(name)
    if agents_secret:
        assert gateway["envFrom"] == [{"secretRef": {"name": agents_secret}}]
    else:
        assert "envFrom" not in gateway
    for deployment in objects_of(name, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert agents_secret not in set(_secret_names(pod["volumes"]))
        for container in pod["containers"]:
            if container is gateway:
                continue
            assert agents_secret not in set(_secret_names(container)), container["name"]
            assert "envFrom" not in container
            names = {item["name"] for item in container["env"]}
            assert not names & {"ANTHROPIC_API_KEY", "OPENAI_API_KEY"}


def test_production_passes_the_agents_secret_to_the_gateway() -> None:
    # Guards the test above against passing for want of a Secret to look for.
    assert values_of("production")["agents"]["existingSecret"] == "agentbot-agents"
    assert "agentbot-agents" in set(_secret_names(gateway_container("production")))
    assert "agentbot-agents" not in set(_secret_names(bot_pod("production")))


def test_beside_the_bot_the_gateway_alone_gets_the_agents_secret() -> None:
    # SQLite with a Secret: both containers share a pod, and only one of them gets the keys.
    values = {**values_of("default"), "agents": {"existingSecret": "model-keys"}}
    deployment = next(doc for doc in _documents(render(values)) if doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    holders = [c["name"] for c in pod["containers"] if "model-keys" in set(_secret_names(c))]
    assert holders == ["gateway"]
    assert "model-keys" not in set(_secret_names(pod["volumes"]))


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_the_gateway_settings_parse(name: str) -> None:
    env = {key: item["value"] for key, item in gateway_env_of(name).items() if "value" in item}
    settings = Settings(_env_file=None, **env)  # type: ignore[call-arg]
    values = _gateway_values(name)
    assert settings.gateway_port == 8082
    assert settings.gateway_proxy_port == 8083
    assert settings.egress_hosts == tuple(values.get("egressAllow", []))
    assert settings.egress_repo_hosts == tuple(values.get("egressRepoAllow", []))
    # A pattern the gateway cannot parse would stop it at start.
    compile_patterns(settings.egress_hosts + settings.egress_repo_hosts)
    assert settings.anthropic_url == (values.get("anthropicUrl") or "https://api.anthropic.com")
    assert settings.openai_url == (values.get("openaiUrl") or "https://api.openai.com")


def test_production_allows_its_hosts_and_relays_openai() -> None:
    env = gateway_env_of("production")
    assert env["AGENTBOT_EGRESS_ALLOW"]["value"] == "packages.example.com,*.cdn.example.com"
    assert env["AGENTBOT_EGRESS_REPO_ALLOW"]["value"] == (
        "*.githubusercontent.com,registry.example.org:8443")
    assert env["AGENTBOT_OPENAI_URL"]["value"] == "https://openai-relay.example.com"
    # Unset upstreams are left to the gateway's defaults, not rendered empty.
    assert "AGENTBOT_ANTHROPIC_URL" not in env
    default = gateway_env_of("default")
    assert "AGENTBOT_ANTHROPIC_URL" not in default and "AGENTBOT_OPENAI_URL" not in default


def test_production_spreads_the_gateway_and_budgets_its_disruptions() -> None:
    budget = one("production", "PodDisruptionBudget", GATEWAY)
    assert budget["spec"]["minAvailable"] == 1
    assert selects(budget["spec"]["selector"]["matchLabels"], _gateway_pod_labels("production"))
    bot_labels = bot_deployment("production")["spec"]["template"]["metadata"]["labels"]
    assert not selects(budget["spec"]["selector"]["matchLabels"], bot_labels)
    (spread,) = gateway_deployment_of("production")["spec"]["template"]["spec"][
        "topologySpreadConstraints"]
    assert selects(spread["labelSelector"]["matchLabels"], _gateway_pod_labels("production"))


# --- Network policies -----------------------------------------------------------------------


def _sandbox_policy(name: str) -> dict[str, Any]:
    return one(name, "NetworkPolicy", f"{RELEASE}-sandbox")["spec"]


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_sandbox_policy_selects_the_executors_pods(name: str) -> None:
    policy = _sandbox_policy(name)
    assert policy["podSelector"] == {"matchLabels": SANDBOX_LABELS}
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["ingress"] == []


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_sandbox_egress_is_dns_the_bot_and_the_gateway_only(name: str) -> None:
    policy = _sandbox_policy(name)
    dns, bot, gateway = policy["egress"]

    assert dns["to"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }]
    assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [(53, "TCP"), (53, "UDP")]

    assert bot["to"] == [{"podSelector": bot_deployment(name)["spec"]["selector"]}]
    assert bot["ports"] == [{"port": 8081, "protocol": "TCP"}]

    (peer,) = gateway["to"]
    assert list(peer) == ["podSelector"]
    assert selects(peer["podSelector"]["matchLabels"], _gateway_pod_labels(name))
    # The ports the gateway container listens on (a policy sees pod ports, not Service ports).
    container_ports = sorted(p["containerPort"] for p in gateway_container(name)["ports"])
    assert gateway["ports"] == [{"port": port, "protocol": "TCP"} for port in container_ports]
    assert container_ports == [8082, 8083]

    # Nothing addressed by IP: the gateway's allowlist decides what lies beyond.
    assert "ipBlock" not in set(_keys(policy))
    assert "namespaceSelector" not in set(_keys([bot, gateway]))


def test_extra_sandbox_egress_comes_after_the_gateway() -> None:
    extra = {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
             "ports": [{"port": 3128, "protocol": "TCP"}]}
    values = {**values_of("default"), "sandbox": {"networkPolicy": {"extraEgress": [extra]}}}
    policy = next(doc for doc in _documents(render(values))
                  if doc["metadata"]["name"] == f"{RELEASE}-sandbox")
    assert len(policy["spec"]["egress"]) == 4
    assert policy["spec"]["egress"][3] == extra


def _admits_to_gateway_ports(rule: dict[str, Any]) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True  # a rule without ports admits every port
    return any(p.get("port") in {"gateway", "gateway-proxy", 8082, 8083} for p in ports)


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_only_sandboxes_reach_the_gateway(name: str) -> None:
    labels = _gateway_pod_labels(name)
    policies = [p for p in objects_of(name, "NetworkPolicy")
                if selects(p["spec"]["podSelector"]["matchLabels"], labels)]
    assert policies, "no NetworkPolicy selects the gateway's pods"
    expected_from = [SANDBOX_PEER, *_gateway_values(name).get("networkPolicy", {}).get(
        "ingressFrom", [])]
    gateway_rules = []
    for policy in policies:
        assert "Ingress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"]["ingress"]:
            if _admits_to_gateway_ports(rule):
                gateway_rules.append(rule)
    # One rule, for the two gateway ports, from sandboxes and the configured peers alone.
    assert gateway_rules == [{
        "ports": [{"port": "gateway", "protocol": "TCP"},
                  {"port": "gateway-proxy", "protocol": "TCP"}],
        "from": expected_from,
    }]
    if gateway_is_standalone(name):
        policy = one(name, "NetworkPolicy", GATEWAY)["spec"]
        assert policy["podSelector"] == gateway_deployment_of(name)["spec"]["selector"]
        assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
        # Out to anywhere: the model providers, GitHub, the allowed hosts, the database.
        assert policy["egress"] == [{}]
        assert len(expected_from) == 2  # production adds its monitoring namespace
    else:
        # The sidecar's ports are in the bot's own policy; there is no second one.
        assert [p["metadata"]["name"] for p in policies] == [RELEASE]
        assert GATEWAY not in {p["metadata"]["name"] for p in objects_of(name, "NetworkPolicy")}


@pytest.mark.parametrize("standalone", [False, True])
def test_turning_the_gateway_policy_off(standalone: bool) -> None:
    values: dict[str, Any] = {**values_of("production" if standalone else "default")}
    values["gateway"] = {**values.get("gateway", {}), "networkPolicy": {"enabled": False}}
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in _documents(render(values))
                if doc["kind"] == "NetworkPolicy"}
    assert GATEWAY not in policies
    bot_rules = policies[RELEASE]["ingress"]
    if standalone:
        assert len(bot_rules) == 2
    else:
        # The bot's pod still serves the gateway's ports, now from any source.
        assert bot_rules[2] == {"ports": [{"port": "gateway", "protocol": "TCP"},
                                          {"port": "gateway-proxy", "protocol": "TCP"}]}


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_bot_policy_admits_its_own_ports_and_a_sidecars(name: str) -> None:
    policy = one(name, "NetworkPolicy", RELEASE)["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    http, internal, *gateway = policy["ingress"]
    assert http["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert internal["ports"] == [{"port": "internal", "protocol": "TCP"}]
    assert internal["from"][0] == SANDBOX_PEER
    assert internal["from"][1:] == values_of(name).get("networkPolicy", {}).get("internalFrom", [])
    assert len(gateway) == (0 if gateway_is_standalone(name) else 1)


# --- Agent sessions -------------------------------------------------------------------------


def test_sessions_are_capped_and_kept_in_the_database_by_default() -> None:
    env = env_of("default")
    assert env["AGENTBOT_SESSION_MAX_BYTES"]["value"] == str(20 * 1024 * 1024)
    assert "AGENTBOT_SESSION_DIR" not in env


def test_a_session_directory_and_cap_reach_the_bot() -> None:
    values = values_of("default")
    values["config"] = {**values.get("config", {}), "sessionMaxBytes": 0,
                        "sessionDir": "/var/lib/agentbot/sessions"}
    [deployment] = [o for o in objects_in(render(values)) if o["kind"] == "Deployment"
                    and o["metadata"]["name"] == RELEASE]
    [container] = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                   if c["name"] == "agentbot"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    settings = Settings(_env_file=None, **{  # type: ignore[call-arg]
        name: env[name] for name in ("AGENTBOT_SESSION_MAX_BYTES", "AGENTBOT_SESSION_DIR")})
    assert settings.session_max_bytes == 0
    assert str(settings.session_dir) == "/var/lib/agentbot/sessions"
