"""Pure functions from a run to the bodies of its Kubernetes Job and Secret."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import yaml

from bot.executors.base import RunSpec, SandboxSecrets

if TYPE_CHECKING:
    from bot.config.settings import Settings

APP_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
RUN_ID_LABEL = "agentbot.dev/run-id"
REPOSITORY_ANNOTATION = "agentbot.dev/repository"
# The selector the executor lists and watches Jobs and pods with.
SANDBOX_SELECTOR = f"{APP_LABEL}=agentbot,{COMPONENT_LABEL}=sandbox"

SPEC_DIR = "/var/run/agentbot"
WORKSPACE = "/workspace"
HOME = "/home/agent"
SANDBOX_UID = 10001
CONTAINER_NAME = "sandbox"
# Scratch space outside the workspace; the workspace itself gets the operator's limit.
SCRATCH_SIZE_LIMIT = "2Gi"
TERMINATION_GRACE_SECONDS = 30

SECRET_KEYS = ("spec.json", "gateway-token", "callback-token")
REDACTED = "<redacted>"
# Shown in dry runs: the Job's uid exists only once the API server has created it.
UID_PLACEHOLDER = "<uid of the Job, known after it is created>"


@dataclass(frozen=True)
class SandboxOptions:
    """The operator's settings that shape every sandbox Job."""

    namespace: str
    image: str
    runtime_class: str | None = None
    ttl_seconds: int = 3600
    cpu: str = "2"
    memory: str = "4Gi"
    ephemeral_storage: str = "10Gi"

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxOptions:
        """The options named by `AGENTBOT_NAMESPACE`, `AGENTBOT_SANDBOX_IMAGE` and the rest."""
        return cls(
            namespace=settings.namespace,
            image=settings.sandbox_image,
            runtime_class=settings.runtime_class,
            ttl_seconds=settings.job_ttl_seconds,
            cpu=settings.sandbox_cpu,
            memory=settings.sandbox_memory,
            ephemeral_storage=settings.sandbox_ephemeral_storage,
        )


def run_name(run_id: int) -> str:
    """The deterministic name of a run's Job and Secret."""
    return f"agentbot-run-{int(run_id)}"


def run_labels(run_id: int) -> dict[str, str]:
    """Labels on every object of a run; the first two are the executor's watch selector."""
    return {APP_LABEL: "agentbot", COMPONENT_LABEL: "sandbox", RUN_ID_LABEL: str(int(run_id))}


def secret_manifest(
    spec: RunSpec,
    secrets: SandboxSecrets,
    *,
    namespace: str,
    job_uid: str | None = None,
) -> dict[str, Any]:
    """The run's Secret: spec.json and the two run credentials, owned by the Job when its uid
    is known."""
    metadata: dict[str, Any] = {
        "name": run_name(spec.run_id),
        "namespace": namespace,
        "labels": run_labels(spec.run_id),
    }
    if job_uid is not None:
        metadata["ownerReferences"] = [{
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": run_name(spec.run_id),
            "uid": job_uid,
            # The bot's Role need not update Jobs' finalizers to own a Secret this way.
            "blockOwnerDeletion": False,
        }]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        # Immutable: the kubelet stops watching it, and nobody may swap a token mid-run.
        "immutable": True,
        # stringData rather than base64 data, so a redacted dry run stays a valid object.
        "stringData": {
            "spec.json": json.dumps(spec.to_json_dict(), sort_keys=True),
            "gateway-token": secrets.gateway_token,
            "callback-token": secrets.callback_token,
        },
    }


def job_manifest(
    spec: RunSpec,
    *,
    namespace: str,
    image: str,
    runtime_class: str | None = None,
    ttl_seconds: int = 3600,
    cpu: str = "2",
    memory: str = "4Gi",
    ephemeral_storage: str = "10Gi",
) -> dict[str, Any]:
    """The run's Job: one pod, no retries, the run's deadline, PSS `restricted`."""
    name = run_name(spec.run_id)
    labels = run_labels(spec.run_id)
    resources = {"cpu": cpu, "memory": memory, "ephemeral-storage": ephemeral_storage}
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        # No command: the image's entrypoint is `python -m sandbox`.
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "AGENTBOT_SPEC_DIR", "value": SPEC_DIR},
            {"name": "AGENTBOT_WORKSPACE", "value": WORKSPACE},
            {"name": "HOME", "value": HOME},
        ],
        # Requests equal limits: Guaranteed QoS, so a busy node evicts sandboxes last.
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": SANDBOX_UID,
            "runAsGroup": SANDBOX_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "run-secret", "mountPath": SPEC_DIR, "readOnly": True},
            {"name": "workspace", "mountPath": WORKSPACE},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, private to the pod
            {"name": "home", "mountPath": HOME},
        ],
        # The sandbox writes its failure summary there; the log tail stands in when it cannot.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SANDBOX_UID,
            "runAsGroup": SANDBOX_UID,
            "fsGroup": SANDBOX_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            # The Job is created before this Secret (the Secret's ownerReference needs the
            # Job's uid). That is safe: a pod whose secret volume is missing waits in
            # ContainerCreating until the Secret exists, so no suspend/unsuspend is needed.
            {"name": "run-secret", "secret": {"secretName": name, "defaultMode": 0o440}},
            {"name": "workspace", "emptyDir": {"sizeLimit": ephemeral_storage}},
            {"name": "tmp", "emptyDir": {"sizeLimit": SCRATCH_SIZE_LIMIT}},
            {"name": "home", "emptyDir": {"sizeLimit": SCRATCH_SIZE_LIMIT}},
        ],
    }
    if runtime_class:
        pod_spec["runtimeClassName"] = runtime_class
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {REPOSITORY_ANNOTATION: spec.repository},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(spec.limits.timeout_seconds),
            "ttlSecondsAfterFinished": int(ttl_seconds),
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


def job_manifest_for(spec: RunSpec, options: SandboxOptions) -> dict[str, Any]:
    """`job_manifest` with the operator's options."""
    fields = asdict(options)
    return job_manifest(spec, **fields)


def redact_secret(secret: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Secret body whose token values read `<redacted>`; spec.json stays readable."""
    redacted = json.loads(json.dumps(secret))
    for section in ("stringData", "data"):
        values = redacted.get(section) or {}
        for key in values:
            if key != "spec.json":
                values[key] = REDACTED
    return redacted


def render_dry_run(spec: RunSpec, secrets: SandboxSecrets, settings: Settings) -> str:
    """The Job and the Secret as YAML documents, in the order and form they would be sent."""
    options = SandboxOptions.from_settings(settings)
    job = job_manifest_for(spec, options)
    secret = redact_secret(
        secret_manifest(spec, secrets, namespace=options.namespace, job_uid=UID_PLACEHOLDER)
    )
    return yaml.safe_dump_all([job, secret], sort_keys=False, default_flow_style=False)
