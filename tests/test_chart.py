"""The Helm chart, linted and rendered by Helm itself, checked against Kubernetes' own schemas."""

from __future__ import annotations

import functools
import ipaddress
import re
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from bot.manifests import SANDBOX_SELECTOR
from bot.settings import Settings
from tests.fakes.kubeapi import K8S_VERSION
from tests.pss import check_restricted

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "agentbot"
# The Kubernetes version the chart is validated for: the one the Kubernetes double serves.
KUBERNETES_VERSION = f"{K8S_VERSION}.0"
RELEASE = "agentbot"
NAMESPACE = "agentbot-system"
VALUES_FILES = {
    "default": CHART / "ci" / "default-values.yaml",
    "production": CHART / "ci" / "production-values.yaml",
}
# What the Kubernetes executor calls (bot/executors/kubernetes.py), and nothing more.
EXECUTOR_GRANTS = {
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
    ("", "secrets"): {"create", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get", "list", "watch"},
}
# Calls the executor makes knowing the Role may refuse them (it reads events only to explain a
# pod that never started); the chart does not grant them.
BEST_EFFORT_CALLS = {("", "events", "list")}
CLIENT_CALL = re.compile(r"\b(create|read|list|delete|patch|replace)_namespaced_([a-z_]+)\b")
CLIENT_VERBS = {"create": "create", "read": "get", "list": "list", "delete": "delete",
                "patch": "patch", "replace": "update"}
REQUIRED_SECRET_MESSAGE = "github.existingSecret is required"
SQLITE_REPLICAS_MESSAGE = "but the database is SQLite: SQLite serves one replica only"


def _values(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load(VALUES_FILES[name].read_text())
    assert isinstance(loaded, dict)
    return loaded


@functools.cache
def _chart() -> helm.Chart:
    # Loaded once per session; charts are immutable in helm-python and released at exit.
    return helm.Chart.load(CHART)


def render(values: dict[str, Any]) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would print it."""
    return _chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


@functools.cache
def rendered(name: str) -> tuple[dict[str, str], tuple[dict[str, Any], ...]]:
    """The NOTES text and the objects of one values file, rendered once per session."""
    files = render(_values(name))
    objects = tuple(
        doc
        for path, text in sorted(files.items())
        if path.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    )
    return files, objects


def objects_of(name: str, kind: str) -> list[dict[str, Any]]:
    return [obj for obj in rendered(name)[1] if obj["kind"] == kind]


def one(name: str, kind: str, object_name: str | None = None) -> dict[str, Any]:
    matches = [
        obj for obj in objects_of(name, kind)
        if object_name is None or obj["metadata"]["name"] == object_name
    ]
    assert len(matches) == 1, f"expected one {kind} {object_name or ''} in {name}"
    return matches[0]


def bot_container(name: str) -> dict[str, Any]:
    containers = one(name, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["agentbot"]
    return containers[0]


def env_of(name: str) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in bot_container(name)["env"]}


def render_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    return str(caught.value)


# --- Helm itself ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_lint_strict_is_clean(name: str) -> None:
    report = helm.lint(
        CHART, _values(name), strict=True, namespace=NAMESPACE,
        kube_version=f"v{KUBERNETES_VERSION}",
    )
    assert report["errors"] == []
    # Severity 2 is a warning, 3 an error; strict mode fails on both.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_lint_reports_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "agentbot"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("kind: {{ .Values.nope.deeper }}\n")
    report = helm.lint(broken, _values("default"), strict=True)
    assert report["errors"] or [m for m in report["messages"] if m["severity"] >= 2]


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_every_object_validates_strictly(name: str) -> None:
    objects = rendered(name)[1]
    assert objects
    for obj in objects:
        # Raises ValidationError on an unknown field or a wrong type, SchemaNotFoundError on
        # a kind or apiVersion that Kubernetes does not serve.
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_strict_validation_would_catch_a_misspelt_field() -> None:
    deployment = yaml.safe_load(yaml.safe_dump(one("default", "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kinds_rendered() -> None:
    default = sorted(obj["kind"] for obj in rendered("default")[1])
    assert default == sorted([
        "Deployment", "NetworkPolicy", "NetworkPolicy", "PersistentVolumeClaim", "Role",
        "RoleBinding", "Service", "Service", "ServiceAccount",
    ])
    production = sorted(obj["kind"] for obj in rendered("production")[1])
    assert production == sorted([
        "Deployment", "Ingress", "NetworkPolicy", "NetworkPolicy", "PodDisruptionBudget",
        "Role", "RoleBinding", "RuntimeClass", "Service", "Service", "ServiceAccount",
    ])


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_labels_follow_helm_conventions(name: str) -> None:
    for obj in rendered(name)[1]:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "agentbot"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "agentbot-0.1.0"
        if obj["kind"] != "RuntimeClass":  # cluster-scoped
            assert obj["metadata"]["namespace"] == NAMESPACE
        about_sandboxes = obj["kind"] == "RuntimeClass" or obj["metadata"]["name"].endswith(
            "-sandbox")
        assert labels["app.kubernetes.io/component"] == (
            "sandbox" if about_sandboxes else "bot")


# --- Pod security ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_pod_templates_pass_pss_restricted(name: str) -> None:
    templates = [
        obj["spec"]["template"] for obj in rendered(name)[1]
        if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}
    ]
    assert templates
    for template in templates:
        annotations = template["metadata"].get("annotations") or {}
        assert check_restricted(template["spec"], annotations=annotations) == []


def test_the_pss_check_would_catch_a_weakened_bot() -> None:
    pod = yaml.safe_load(yaml.safe_dump(one("default", "Deployment")["spec"]["template"]["spec"]))
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    del pod["securityContext"]["runAsNonRoot"], pod["containers"][0]["securityContext"][
        "runAsNonRoot"]
    assert len(check_restricted(pod)) >= 2


def test_the_bot_runs_read_only_as_uid_10001() -> None:
    pod = one("default", "Deployment")["spec"]["template"]["spec"]
    container = bot_container("default")
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["args"] == ["serve"]
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


# --- RBAC -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_role_grants_exactly_what_the_executor_calls(name: str) -> None:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in one(name, "Role")["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == EXECUTOR_GRANTS
    assert objects_of(name, "ClusterRole") == []
    assert objects_of(name, "ClusterRoleBinding") == []
    binding = one(name, "RoleBinding")
    assert binding["roleRef"]["name"] == one(name, "Role")["metadata"]["name"]
    account = one(name, "ServiceAccount")
    assert binding["subjects"] == [{
        "kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE,
    }]
    deployment_pod = one(name, "Deployment")["spec"]["template"]["spec"]
    assert deployment_pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False


def test_every_kubernetes_call_in_the_code_is_granted() -> None:
    calls = set()
    for source in (ROOT / "bot").rglob("*.py"):
        for verb, kind in CLIENT_CALL.findall(source.read_text()):
            group = "batch" if kind == "job" else ""
            resource = "pods/log" if kind == "pod_log" else f"{kind}s"
            call = (group, resource, CLIENT_VERBS[verb])
            calls.add(call)
            if verb == "list" and call not in BEST_EFFORT_CALLS:
                # The executor watches what it lists, from the list's resourceVersion.
                calls.add((group, resource, "watch"))
    assert calls, "found no Kubernetes client call in bot/"
    granted = {(group, resource, verb)
               for (group, resource), verbs in EXECUTOR_GRANTS.items() for verb in verbs}
    assert calls - BEST_EFFORT_CALLS <= granted


# --- Configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_every_variable_is_a_setting_the_bot_reads(name: str) -> None:
    aliases = {field.alias for field in Settings.model_fields.values() if field.alias}
    assert set(env_of(name)) <= aliases


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_secrets_come_from_secret_references_only(name: str) -> None:
    env = env_of(name)
    values = _values(name)
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
    values = _values(name).get("sandbox", {}).get("networkPolicy", {})
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
    assert internal["from"][1:] == _values(name).get("networkPolicy", {}).get("internalFrom", [])


# --- Guards and schema ----------------------------------------------------------------------


def test_defaults_alone_fail_for_the_missing_app_secret() -> None:
    assert REQUIRED_SECRET_MESSAGE in render_error({})


def test_three_replicas_on_sqlite_fail() -> None:
    message = render_error({**_values("default"), "replicaCount": 3})
    assert "replicaCount is 3" in message and SQLITE_REPLICAS_MESSAGE in message


def test_postgresql_without_its_secret_fails() -> None:
    values = {**_values("default"), "postgresql": {"enabled": True}}
    assert "postgresql.existingSecret is required" in render_error(values)


def test_runtime_class_creation_needs_a_name() -> None:
    values = {**_values("default"), "runtimeClass": {"create": True},
              "sandbox": {"runtimeClassName": ""}}
    assert "runtimeClass.create needs sandbox.runtimeClassName" in render_error(values)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"github": {"existingSecret": "s", "privateKey": "-----BEGIN"}}, "/github"),
        ({"github": {"existingSecret": "s"}, "webhookSecret": "hunter2"}, ""),
        ({"github": {"existingSecret": "s"}, "sandbox": {"networkPolicy": {
            "githubCidrs": ["github.com"]}}}, "/sandbox/networkPolicy/githubCidrs/0"),
        ({"github": {"existingSecret": "s"}, "replicaCount": "three"}, "/replicaCount"),
    ],
)
def test_schema_refuses_unknown_and_malformed_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(values)
    assert f"at '{where}'" in str(caught.value)


# --- NOTES ----------------------------------------------------------------------------------


def test_notes_print_the_webhook_url_and_the_secrets() -> None:
    notes = rendered("production")[0][f"{RELEASE}/templates/NOTES.txt"]
    assert "https://agentbot.example.com/webhook" in notes
    for secret in ("agentbot-github", "agentbot-database", "agentbot-agents"):
        assert f'Secret "{secret}"' in notes
    for key in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET", "url"):
        assert key in notes


def test_notes_without_a_public_url_explain_port_forwarding() -> None:
    notes = rendered("default")[0][f"{RELEASE}/templates/NOTES.txt"]
    assert f"port-forward service/{RELEASE} 8080:80" in notes
    assert "agents.existingSecret is empty" in notes
    assert "kubectl get runtimeclass gvisor" in notes
