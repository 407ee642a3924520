"""The Kubernetes API double answers the real client as an API server would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.fakes import kubeapi
from tests.fakes.kubeapi import KubeAPI
from tests.fakes.kubeapi_store import parse_field_selector, parse_label_selector

kube_api = kubeapi.kube_api

LABELS = {"app.kubernetes.io/name": "agentbot", "app.kubernetes.io/component": "sandbox"}


def job_body(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {**LABELS, **labels}},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": {**LABELS, **labels}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "sandbox", "image": "img:1"}]}}},
    }


def secret_body(name: str, owner_uid: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": dict(LABELS)}
    if owner_uid:
        metadata["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                        "uid": owner_uid}]
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata,
            "stringData": {"token": "t0ps3cret"}}


@pytest.fixture
async def apis(kube_api: KubeAPI) -> AsyncIterator[tuple[client.BatchV1Api, client.CoreV1Api]]:
    api = client.ApiClient(kube_api.configuration())
    yield client.BatchV1Api(api), client.CoreV1Api(api)
    api.close()


def status_of(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)  # type: ignore[no-any-return]


async def test_create_get_and_conflicts(kube_api: KubeAPI, apis: Any) -> None:
    batch, _ = apis
    created = await asyncio.to_thread(batch.create_namespaced_job, kube_api.namespace,
                                      job_body("a"))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.spec.selector.match_labels == {
        "batch.kubernetes.io/controller-uid": created.metadata.uid}
    read = await asyncio.to_thread(batch.read_namespaced_job, "a", kube_api.namespace)
    assert read.metadata.uid == created.metadata.uid
    with pytest.raises(ApiException) as conflict:
        await asyncio.to_thread(batch.create_namespaced_job, kube_api.namespace, job_body("a"))
    assert conflict.value.status == 409
    assert status_of(conflict.value) | {"details": None} == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'jobs.batch "a" already exists', "reason": "AlreadyExists", "code": 409,
        "details": None}
    with pytest.raises(ApiException) as missing:
        await asyncio.to_thread(batch.read_namespaced_job, "b", kube_api.namespace)
    assert missing.value.status == 404
    assert status_of(missing.value)["reason"] == "NotFound"


async def test_invalid_bodies_are_refused_and_recorded(kube_api: KubeAPI) -> None:
    body = job_body("bad")
    body["spec"]["backofLimit"] = 1  # a typo strict validation catches
    # Posted by hand: the generated client would refuse this body before sending it.
    async with aiohttp.ClientSession() as session, session.post(
            f"{kube_api.url}/apis/batch/v1/namespaces/{kube_api.namespace}/jobs",
            json=body) as response:
        assert response.status == 422
        refused = await response.json()
    assert refused["reason"] == "Invalid" and refused["code"] == 422
    assert "backofLimit" in refused["message"]
    assert kube_api.invalid_bodies and kube_api.invalid_bodies[0][0] == "Job/bad"
    assert not kube_api.exists("jobs", "bad")
    kube_api.invalid_bodies.clear()  # refused on purpose: do not fail this test for it


def _job(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "c", "image": "busybox"}]}}, **spec}}


@pytest.mark.parametrize("body", [
    _job(),
    _job(backoffLimit=0),
    _job(backoffLimit="zero"),  # wrong type
    _job(surprise=True),  # an unknown field: strict schemas refuse it
    {**_job(), "spec": {"template": {"spec": {"containers": [{"image": "busybox"}]}}}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": 1}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque"},
    {"apiVersion": "v1", "kind": "Gadget", "metadata": {"name": "g"}},  # no such kind
    # several errors at once: the same one is named
    {**_job(backoffLimit="zero", surprise=True, parallelism="two"), "kind": "Job"},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": 5}, "data": {"k": 1},
     "type": 3},
])
def test_the_cached_schemas_judge_as_kubernetes_validate_does(body: dict[str, Any]) -> None:
    """The double builds each kind's validator once; it refuses exactly what the library's
    own `validate` refuses, with the same message."""
    try:
        kubernetes_validate.validate(body, kubeapi.K8S_VERSION, strict=True)
        expected = None
    except kubernetes_validate.ValidationError as exc:
        expected = exc.message
    except kubernetes_validate.SchemaNotFoundError as exc:
        expected = exc.message
    problems = kubeapi.validation_problems(body)
    if expected is None:
        assert problems == []
    else:
        assert problems and problems[0].endswith(expected)
    assert kubeapi.validation_problems(body) == problems  # from the cache, the same answer


async def test_secret_string_data_is_stored_as_data(kube_api: KubeAPI, apis: Any) -> None:
    _, core = apis
    await asyncio.to_thread(core.create_namespaced_secret, kube_api.namespace, secret_body("s"))
    stored = kube_api.secret("s")
    assert "stringData" not in stored
    assert kube_api.secret_values("s") == {"token": "t0ps3cret"}


async def test_list_filters_by_label_and_reports_a_resource_version(
        kube_api: KubeAPI, apis: Any) -> None:
    batch, _ = apis
    for name, run in (("x", "1"), ("y", "2")):
        await asyncio.to_thread(batch.create_namespaced_job, kube_api.namespace,
                                job_body(name, **{"agentbot.dev/run-id": run}))
    listed = await asyncio.to_thread(batch.list_namespaced_job, kube_api.namespace,
                                     label_selector="agentbot.dev/run-id in (2,3)")
    assert [j.metadata.name for j in listed.items] == ["y"]
    assert int(listed.metadata.resource_version) == kube_api.store.rv


def test_selectors() -> None:
    obj = {"metadata": {"labels": {"a": "1", "b": "2"}}, "involvedObject": {"name": "p"}}
    assert parse_label_selector("a=1,b==2")(obj)
    assert parse_label_selector("a,!c,b notin (3)")(obj)
    assert not parse_label_selector("a!=1")(obj)
    assert parse_field_selector("involvedObject.name=p")(obj)
    assert not parse_field_selector("involvedObject.name!=p")(obj)
    with pytest.raises(ValueError):
        parse_label_selector("a=(")


def _watch(batch: client.BatchV1Api, namespace: str, version: str) -> list[dict[str, Any]]:
    response = batch.list_namespaced_job(namespace, watch=True, resource_version=version,
                                         timeout_seconds=1, _preload_content=False)
    try:
        return [json.loads(line) for line in response.data.splitlines() if line.strip()]
    finally:
        response.release_conn()


async def test_watch_replays_history_and_ends_at_its_timeout(kube_api: KubeAPI,
                                                             apis: Any) -> None:
    batch, _ = apis
    version = str(kube_api.store.rv)
    await asyncio.to_thread(batch.create_namespaced_job, kube_api.namespace, job_body("w"))
    await asyncio.sleep(0.05)  # the Job controller's pod and status update
    events = await asyncio.to_thread(_watch, batch, kube_api.namespace, version)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED"]
    assert events[1]["object"]["status"]["active"] == 1
    assert events[0]["object"]["kind"] == "Job"


async def test_watch_from_a_compacted_version_gets_410(kube_api: KubeAPI, apis: Any) -> None:
    batch, _ = apis
    version = str(kube_api.store.rv)
    await asyncio.to_thread(batch.create_namespaced_job, kube_api.namespace, job_body("c"))
    kube_api.compact()
    (event,) = await asyncio.to_thread(_watch, batch, kube_api.namespace, version)
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"


async def test_history_is_bounded(aiohttp_server: Any) -> None:
    small = KubeAPI(history_size=3)
    server = await aiohttp_server(small.app)
    small.url = str(server.make_url("")).rstrip("/")
    version = small.store.rv
    for name in ("h1", "h2", "h3", "h4"):
        small.store.create("secrets", small.namespace, secret_body(name))
    assert small.store.compacted_rv == version + 1
    await small.close()


async def test_jobs_deleted_without_a_policy_orphan_their_dependents(
        kube_api: KubeAPI, apis: Any) -> None:
    batch, core = apis
    job = await asyncio.to_thread(batch.create_namespaced_job, kube_api.namespace,
                                  job_body("o"))
    await asyncio.to_thread(core.create_namespaced_secret, kube_api.namespace,
                            secret_body("o", job.metadata.uid))
    await asyncio.sleep(0.05)
    await asyncio.to_thread(batch.delete_namespaced_job, "o", kube_api.namespace)
    await asyncio.sleep(0.05)
    assert ("jobs", "o", "Orphan") in kube_api.deletions
    assert kube_api.secret("o")["metadata"]["ownerReferences"] == []
    assert kube_api.pods_of("o")  # the batch/v1 default for Jobs: pods are left behind


@pytest.mark.parametrize("policy", ["Background", "Foreground"])
async def test_propagating_deletes_collect_dependents(kube_api: KubeAPI, apis: Any,
                                                      policy: str) -> None:
    batch, core = apis
    job = await asyncio.to_thread(batch.create_namespaced_job, kube_api.namespace,
                                  job_body("p"))
    await asyncio.to_thread(core.create_namespaced_secret, kube_api.namespace,
                            secret_body("p", job.metadata.uid))
    await asyncio.sleep(0.05)
    await asyncio.to_thread(batch.delete_namespaced_job, "p", kube_api.namespace,
                            body=client.V1DeleteOptions(propagation_policy=policy))
    await asyncio.sleep(0.05)
    assert not kube_api.exists("jobs", "p")
    assert not kube_api.exists("secrets", "p")
    assert kube_api.pods_of("p") == []


async def test_a_dependent_created_after_its_owner_is_gone_is_collected(
        kube_api: KubeAPI, apis: Any) -> None:
    _, core = apis
    await asyncio.to_thread(core.create_namespaced_secret, kube_api.namespace,
                            secret_body("late", "0000-gone"))
    await asyncio.sleep(0.05)
    assert not kube_api.exists("secrets", "late")


async def test_injected_errors(kube_api: KubeAPI, apis: Any) -> None:
    batch, _ = apis
    kube_api.fail_next(1, status=500, method="GET", plural="jobs")
    with pytest.raises(ApiException) as failed:
        await asyncio.to_thread(batch.list_namespaced_job, kube_api.namespace)
    assert failed.value.status == 500
    assert status_of(failed.value)["reason"] == "InternalError"
    listed = await asyncio.to_thread(batch.list_namespaced_job, kube_api.namespace)
    assert listed.items == []


async def test_other_namespaces_and_kinds_are_not_served(kube_api: KubeAPI, apis: Any) -> None:
    batch, core = apis
    with pytest.raises(ApiException) as other:
        await asyncio.to_thread(batch.list_namespaced_job, "kube-system")
    assert other.value.status == 404
    with pytest.raises(ApiException) as kind:
        await asyncio.to_thread(core.list_namespaced_config_map, kube_api.namespace)
    assert kind.value.status == 404


async def test_requests_are_recorded_as_rbac_sees_them(kube_api: KubeAPI, apis: Any) -> None:
    batch, core = apis
    ns = kube_api.namespace
    job = await asyncio.to_thread(batch.create_namespaced_job, ns, job_body("r"))
    await asyncio.to_thread(batch.read_namespaced_job, "r", ns)
    await asyncio.to_thread(core.create_namespaced_secret, ns, secret_body("r", job.metadata.uid))
    await asyncio.to_thread(core.delete_namespaced_secret, "r", ns)
    await asyncio.to_thread(core.list_namespaced_pod, ns)
    watch = await asyncio.to_thread(core.list_namespaced_pod, ns, watch=True, timeout_seconds=0,
                                    _preload_content=False)
    watch.release_conn()
    with pytest.raises(ApiException):  # not served, still authorised (or not) as pods/log
        await asyncio.to_thread(core.read_namespaced_pod_log, "nope", ns)

    assert kube_api.rbac_calls() == {
        ("batch", "jobs", "create"), ("batch", "jobs", "get"), ("", "secrets", "create"),
        ("", "secrets", "delete"), ("", "pods", "list"), ("", "pods", "watch"),
        ("", "pods/log", "get")}
    assert kubeapi.rbac_call("DELETE", f"/api/v1/namespaces/{ns}/pods", {}) == (
        "", "pods", "deletecollection")
    assert kubeapi.rbac_call("GET", "/version", {}) is None
