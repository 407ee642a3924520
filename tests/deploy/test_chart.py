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


def test_runtime_class_creation_needs_a_name() -> None:
    values = {**values_of("default"), "runtimeClass": {"create": True},
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


def test_notes_without_a_public_url_explain_port_forwarding() -> None:
    notes = rendered("default")[0][f"{RELEASE}/templates/NOTES.txt"]
    assert f"port-forward service/{RELEASE} 8080:80" in notes
    assert "agents.existingSecret is empty" in notes
    assert "kubectl get runtimeclass gvisor" in notes
