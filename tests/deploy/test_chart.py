"""The Helm chart, linted and rendered by Helm itself, checked against Kubernetes' own schemas."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from bot.executors.kubernetes import API_PERMISSIONS
from tests.deploy.chart_render import (
    CHART,
    KUBERNETES_VERSION,
    NAMESPACE,
    RELEASE,
    ROOT,
    VALUES_FILES,
    bot_container,
    bot_deployment,
    bot_pod,
    gateway_container,
    gateway_deployment_of,
    gateway_is_standalone,
    objects_of,
    one,
    render,
    render_error,
    rendered,
    values_of,
)
from tests.executors.pss import check_restricted

# What the Kubernetes executor calls, as it declares it; tests/executors/test_kubernetes.py
# checks the declaration against the requests the API double receives.
EXECUTOR_GRANTS = {key: set(verbs) for key, verbs in API_PERMISSIONS.items()}
CLIENT_CALL = re.compile(r"\b(create|read|list|delete|patch|replace)_namespaced_([a-z_]+)\b")
CLIENT_VERBS = {"create": "create", "read": "get", "list": "list", "delete": "delete",
                "patch": "patch", "replace": "update"}
REQUIRED_SECRET_MESSAGE = "github.existingSecret is required"
SQLITE_REPLICAS_MESSAGE = "but the database is SQLite: SQLite serves one replica only"


# --- Helm itself ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_lint_strict_is_clean(name: str) -> None:
    report = helm.lint(
        CHART, values_of(name), strict=True, namespace=NAMESPACE,
        kube_version=f"v{KUBERNETES_VERSION}",
    )
    assert report["errors"] == []
    # Severity 2 is a warning, 3 an error; strict mode fails on both.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_lint_reports_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "agentbot"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("kind: {{ .Values.nope.deeper }}\n")
    report = helm.lint(broken, values_of("default"), strict=True)
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
    deployment = yaml.safe_load(yaml.safe_dump(bot_deployment("default")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kinds_rendered() -> None:
    default = sorted(obj["kind"] for obj in rendered("default")[1])
    # SQLite: the gateway is a container of the bot's pod, with a Service of its own.
    assert default == sorted([
        "Deployment", "NetworkPolicy", "NetworkPolicy", "PersistentVolumeClaim", "Role",
        "RoleBinding", "Service", "Service", "Service", "ServiceAccount",
    ])
    production = sorted(obj["kind"] for obj in rendered("production")[1])
    # PostgreSQL: the gateway's own Deployment, ServiceAccount, policy and budget; and the
    # ConfigMap of its price table.
    assert production == sorted([
        "ConfigMap", "Deployment", "Deployment", "Ingress", "NetworkPolicy", "NetworkPolicy",
        "NetworkPolicy", "PodDisruptionBudget", "PodDisruptionBudget", "Role", "RoleBinding",
        "RuntimeClass", "Service", "Service", "Service", "ServiceAccount", "ServiceAccount",
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
        object_name = obj["metadata"]["name"]
        if obj["kind"] == "RuntimeClass" or object_name.endswith("-sandbox"):
            component = "sandbox"
        elif object_name.endswith(("-gateway", "-gateway-prices")):
            component = "gateway"
        else:
            component = "bot"
        assert labels["app.kubernetes.io/component"] == component, object_name


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
    pod = yaml.safe_load(yaml.safe_dump(bot_pod("default")))
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    del pod["securityContext"]["runAsNonRoot"], pod["containers"][0]["securityContext"][
        "runAsNonRoot"]
    assert len(check_restricted(pod)) >= 2


def test_the_bot_runs_read_only_as_uid_10001() -> None:
    pod = bot_pod("default")
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


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_the_gateway_runs_read_only_as_uid_10001(name: str) -> None:
    deployment = gateway_deployment_of(name)
    pod = deployment["spec"]["template"]["spec"]
    container = gateway_container(name)
    assert container["args"] == ["gateway"]
    assert container["image"] == bot_container(name)["image"]
    assert pod["securityContext"] == bot_pod(name)["securityContext"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"] == bot_container(name)["securityContext"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["enableServiceLinks"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # Its own scratch space, even beside the bot.
    bot_mounts = {m["mountPath"]: m["name"] for m in bot_container(name)["volumeMounts"]}
    assert mounts["/tmp"] != bot_mounts["/tmp"]
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "gateway"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "gateway"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "gateway"}
    resources = values_of(name).get("gateway", {}).get("resources")
    if resources:
        assert container["resources"] == resources
    else:
        assert container["resources"]["limits"]["memory"]


API_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_only_the_bot_container_holds_an_api_token(name: str) -> None:
    # The bot's pod opts out of the automatic token, which would reach every container, the
    # gateway's too, and mounts a token into the bot's container by itself.
    for deployment in objects_of(name, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        token_volumes = {
            v["name"] for v in pod["volumes"]
            if any("serviceAccountToken" in source
                   for source in v.get("projected", {}).get("sources", []))
        }
        for container in pod["containers"]:
            mounted = {m["name"] for m in container["volumeMounts"]}
            if container["name"] == "agentbot":
                (volume,) = token_volumes
                assert {"name": volume, "mountPath": API_TOKEN_DIR, "readOnly": True} in (
                    container["volumeMounts"])
            else:
                assert not mounted & token_volumes, container["name"]
                assert API_TOKEN_DIR not in {m["mountPath"] for m in container["volumeMounts"]}
    sources = next(
        v["projected"]["sources"] for v in bot_pod(name)["volumes"] if "projected" in v
    )
    # What the Kubernetes client's in-cluster configuration reads.
    assert {"serviceAccountToken", "configMap", "downwardAPI"} == {
        key for source in sources for key in source}


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
    account = one(name, "ServiceAccount", RELEASE)
    assert binding["subjects"] == [{
        "kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE,
    }]
    assert bot_pod(name)["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    # The gateway never acts as the bot's account: its own, bound to nothing, or the bot's pod.
    gateway = gateway_deployment_of(name)
    if gateway_is_standalone(name):
        gateway_account = one(name, "ServiceAccount", f"{RELEASE}-gateway")
        assert gateway["spec"]["template"]["spec"]["serviceAccountName"] == (
            gateway_account["metadata"]["name"])
        assert gateway_account["automountServiceAccountToken"] is False
        assert "annotations" not in gateway_account["metadata"]
    else:
        assert gateway is bot_deployment(name)
        assert [o["metadata"]["name"] for o in objects_of(name, "ServiceAccount")] == [RELEASE]


def test_the_kubernetes_calls_in_the_code_are_exactly_the_grants() -> None:
    calls = set()
    for source in (ROOT / "bot").rglob("*.py"):
        for verb, kind in CLIENT_CALL.findall(source.read_text()):
            group = "batch" if kind == "job" else ""
            resource = "pods/log" if kind == "pod_log" else f"{kind}s"
            call = (group, resource, CLIENT_VERBS[verb])
            calls.add(call)
            if verb == "list":
                # The executor watches what it lists, from the list's resourceVersion.
                calls.add((group, resource, "watch"))
    assert calls, "found no Kubernetes client call in bot/"
    granted = {(group, resource, verb)
               for (group, resource), verbs in EXECUTOR_GRANTS.items() for verb in verbs}
    assert calls == granted


# --- Guards and schema ----------------------------------------------------------------------


def test_defaults_alone_fail_for_the_missing_app_secret() -> None:
    assert REQUIRED_SECRET_MESSAGE in render_error({})


def test_three_replicas_on_sqlite_fail() -> None:
    message = render_error({**values_of("default"), "replicaCount": 3})
    assert "replicaCount is 3" in message and SQLITE_REPLICAS_MESSAGE in message


def test_postgresql_without_its_secret_fails() -> None:
    values = {**values_of("default"), "postgresql": {"enabled": True}}
    assert "postgresql.existingSecret is required" in render_error(values)


def test_container_ports_must_differ() -> None:
    # The gateway may share the bot's pod, and so its network namespace.
    values = {**values_of("default"), "containerPorts": {"gateway": 8081}}
    assert "containerPorts must be four different ports" in render_error(values)


def test_runtime_class_creation_needs_a_name() -> None:
    values = {**values_of("default"), "runtimeClass": {"create": True},
              "sandbox": {"runtimeClassName": ""}}
    assert "runtimeClass.create needs sandbox.runtimeClassName" in render_error(values)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"github": {"existingSecret": "s", "privateKey": "-----BEGIN"}}, "/github"),
        ({"github": {"existingSecret": "s"}, "webhookSecret": "hunter2"}, ""),
        # The CIDR allowlist is gone: sandboxes reach the outside through the gateway only.
        ({"github": {"existingSecret": "s"}, "sandbox": {"networkPolicy": {
            "githubCidrs": ["140.82.112.0/20"]}}}, "/sandbox/networkPolicy"),
        ({"github": {"existingSecret": "s"}, "sandbox": {"networkPolicy": {
            "egressPorts": [443]}}}, "/sandbox/networkPolicy"),
        ({"github": {"existingSecret": "s"}, "gateway": {"replicaCount": 0}},
         "/gateway/replicaCount"),
        ({"github": {"existingSecret": "s"}, "gateway": {"egressAllow": ["a.com, b.com"]}},
         "/gateway/egressAllow/0"),
        ({"github": {"existingSecret": "s"}, "gateway": {"openaiUrl": "api.openai.com"}},
         "/gateway/openaiUrl"),
        ({"github": {"existingSecret": "s"}, "gateway": {"apiKey": "sk-secret"}}, "/gateway"),
        ({"github": {"existingSecret": "s"}, "replicaCount": "three"}, "/replicaCount"),
    ],
)
def test_schema_refuses_unknown_and_malformedvalues(values: dict[str, Any], where: str) -> None:
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
    assert "environment variable of the gateway only" in notes
    assert "sandbox pods" not in notes
    assert f"deployment/{RELEASE}-gateway" in notes
    assert "packages.example.com, *.cdn.example.com" in notes


def test_notes_without_a_public_url_explain_port_forwarding() -> None:
    notes = rendered("default")[0][f"{RELEASE}/templates/NOTES.txt"]
    assert f"port-forward service/{RELEASE} 8080:80" in notes
    assert "agents.existingSecret is empty" in notes
    assert "kubectl get runtimeclass gvisor" in notes
    assert f"http://{RELEASE}-gateway.{NAMESPACE}.svc.cluster.local:8082" in notes
    assert "`gateway` container of the bot's pod" in notes
    assert f"deployment/{RELEASE}-gateway" not in notes
