"""The Job and Secret bodies: every field the spec asks for, schema-valid, and the dry run."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml

from bot.config.settings import Settings
from bot.executors import manifests
from bot.executors.base import RunSpec, SandboxLimits, SandboxSecrets
from tests.fakes.kubeapi import K8S_VERSION, validation_problems

SECRETS = SandboxSecrets(gateway_token="agw_42_gatewayCredentialOfRun42abcdefghijklmnopq",
                         callback_token="cb-0123456789abcdef-run-42")


def run_spec(run_id: int = 42, timeout: int = 1200) -> RunSpec:
    return RunSpec(
        run_id=run_id, repository="octo/widgets",
        clone_url="https://github.com/octo/widgets.git", base_ref="main", base_sha="f" * 40,
        branch=f"agentbot/run-{run_id}", prompt="Fix the flaky test in tests/test_io.py",
        agent="claude", model="sonnet", setup=["pip install -e ."],
        limits=SandboxLimits(timeout_seconds=timeout, setup_timeout_seconds=300,
                             max_changed_files=50, max_result_bytes=1 << 20),
        callback_url=f"http://agentbot-internal:8081/internal/runs/{run_id}",
        installation_id=7,
    )


def job(**overrides: object) -> dict:
    options = {"namespace": "agentbot", "image": "ghcr.io/agentbot/agentbot-sandbox:0.1.0",
               "runtime_class": "runsc", **overrides}
    return manifests.job_manifest(run_spec(), **options)  # type: ignore[arg-type]


def container_of(body: dict) -> dict:
    (container,) = body["spec"]["template"]["spec"]["containers"]
    return container


def test_names_are_deterministic() -> None:
    assert manifests.run_name(42) == "agentbot-run-42"
    assert job()["metadata"]["name"] == "agentbot-run-42"
    assert manifests.secret_manifest(run_spec(), SECRETS, namespace="x")["metadata"]["name"] \
        == "agentbot-run-42"


def test_job_runs_once_within_the_run_timeout_and_expires() -> None:
    spec = job(ttl_seconds=600)["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 1200
    assert spec["ttlSecondsAfterFinished"] == 600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False


def test_labels_on_job_and_pod_template() -> None:
    body = job()
    expected = {"app.kubernetes.io/name": "agentbot", "app.kubernetes.io/component": "sandbox",
                "agentbot.dev/run-id": "42"}
    assert body["metadata"]["labels"] == expected
    assert body["spec"]["template"]["metadata"]["labels"] == expected
    assert body["metadata"]["namespace"] == "agentbot"
    assert body["metadata"]["annotations"]["agentbot.dev/repository"] == "octo/widgets"


def test_runtime_class_only_when_set() -> None:
    assert job()["spec"]["template"]["spec"]["runtimeClassName"] == "runsc"
    assert "runtimeClassName" not in job(runtime_class=None)["spec"]["template"]["spec"]


def test_the_sandbox_gets_no_secret_but_its_own_run_secret() -> None:
    # The model keys live with the gateway: nothing of the operator's reaches the pod.
    body = job()
    container = container_of(body)
    assert "envFrom" not in container
    assert all("valueFrom" not in e for e in container["env"])
    secret_volumes = [v["secret"]["secretName"] for v in body["spec"]["template"]["spec"]
                      ["volumes"] if "secret" in v]
    assert secret_volumes == [manifests.run_name(42)]


def test_environment_and_mounts() -> None:
    container = container_of(job())
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"AGENTBOT_SPEC_DIR": "/var/run/agentbot", "AGENTBOT_WORKSPACE": "/workspace",
                   "HOME": "/home/agent"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"/var/run/agentbot", "/workspace", "/tmp", "/home/agent"}
    assert mounts["/var/run/agentbot"]["readOnly"] is True
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_volumes_are_a_secret_and_size_limited_empty_dirs() -> None:
    volumes = {v["name"]: v for v in job(ephemeral_storage="8Gi")["spec"]["template"]["spec"]
               ["volumes"]}
    assert volumes["run-secret"]["secret"] == {"secretName": "agentbot-run-42",
                                               "defaultMode": 0o440}
    assert volumes["workspace"]["emptyDir"] == {"sizeLimit": "8Gi"}
    for name in ("tmp", "home"):
        assert volumes[name]["emptyDir"]["sizeLimit"] == manifests.SCRATCH_SIZE_LIMIT


def test_resources_include_ephemeral_storage() -> None:
    resources = container_of(job(cpu="1500m", memory="3Gi", ephemeral_storage="6Gi"))["resources"]
    expected = {"cpu": "1500m", "memory": "3Gi", "ephemeral-storage": "6Gi"}
    assert resources == {"requests": expected, "limits": expected}


def test_security_context_is_locked_down() -> None:
    pod = job()["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"}}
    context = container_of(job())["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001


def test_secret_holds_spec_and_tokens_and_is_owned_by_the_job() -> None:
    body = manifests.secret_manifest(run_spec(), SECRETS, namespace="agentbot", job_uid="u-1")
    assert body["metadata"]["labels"]["agentbot.dev/run-id"] == "42"
    assert body["immutable"] is True
    assert set(body["stringData"]) == set(manifests.SECRET_KEYS)
    assert json.loads(body["stringData"]["spec.json"]) == run_spec().to_json_dict()
    assert body["stringData"]["gateway-token"] == SECRETS.gateway_token
    assert body["stringData"]["callback-token"] == SECRETS.callback_token
    assert body["metadata"]["ownerReferences"] == [{
        "apiVersion": "batch/v1", "kind": "Job", "name": "agentbot-run-42", "uid": "u-1",
        "blockOwnerDeletion": False}]
    unowned = manifests.secret_manifest(run_spec(), SECRETS, namespace="agentbot")
    assert "ownerReferences" not in unowned["metadata"]


@pytest.mark.parametrize("runtime_class", ["runsc", None])
def test_job_validates_strictly(runtime_class: str | None) -> None:
    body = job(runtime_class=runtime_class)
    assert validation_problems(body) == []
    assert kubernetes_validate.validate(body, K8S_VERSION, strict=True) == K8S_VERSION


@pytest.mark.parametrize("job_uid", ["0b8f9c1e-7d1a-4d9e-9a5e-3f2c1b0a9d8e", None])
def test_secret_validates_strictly(job_uid: str | None) -> None:
    body = manifests.secret_manifest(run_spec(), SECRETS, namespace="agentbot", job_uid=job_uid)
    assert validation_problems(body) == []


def test_the_validator_is_strict() -> None:
    # A control: the same check refuses a field the schema does not know, and a bad label.
    body = job()
    body["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRoot"] = True
    assert validation_problems(body)
    body = job()
    body["metadata"]["labels"]["agentbot.dev/run-id"] = "not valid!"
    assert validation_problems(body)


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, namespace="sandboxes",  # type: ignore[call-arg]
                    sandbox_image="registry.example/sandbox:2", runtime_class="gvisor",
                    job_ttl_seconds=900, sandbox_cpu="3",
                    sandbox_memory="6Gi", sandbox_ephemeral_storage="20Gi", **values)


def test_options_come_from_settings() -> None:
    options = manifests.SandboxOptions.from_settings(settings())
    assert options == manifests.SandboxOptions(
        namespace="sandboxes", image="registry.example/sandbox:2", runtime_class="gvisor",
        ttl_seconds=900, cpu="3", memory="6Gi",
        ephemeral_storage="20Gi")


def test_dry_run_is_the_job_and_the_redacted_secret_as_yaml() -> None:
    text = manifests.render_dry_run(run_spec(), SECRETS, settings())
    assert SECRETS.gateway_token not in text and SECRETS.callback_token not in text
    documents = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in documents] == ["Job", "Secret"]
    assert "\n---\n" in text
    job_doc, secret_doc = documents
    options = manifests.SandboxOptions.from_settings(settings())
    assert job_doc == manifests.job_manifest_for(run_spec(), options)
    assert job_doc["metadata"]["namespace"] == secret_doc["metadata"]["namespace"] == "sandboxes"
    assert secret_doc["stringData"]["gateway-token"] == manifests.REDACTED
    assert secret_doc["stringData"]["callback-token"] == manifests.REDACTED
    assert json.loads(secret_doc["stringData"]["spec.json"]) == run_spec().to_json_dict()
    assert secret_doc["metadata"]["ownerReferences"][0]["uid"] == manifests.UID_PLACEHOLDER
    for document in documents:
        assert validation_problems(document) == []


def test_redaction_covers_base64_data_too() -> None:
    secret = {"kind": "Secret", "data": {"gateway-token": "Z2hz", "spec.json": "e30="}}
    assert manifests.redact_secret(secret)["data"] == {"gateway-token": manifests.REDACTED,
                                                       "spec.json": "e30="}
    assert secret["data"]["gateway-token"] == "Z2hz"  # the input is left alone
