"""The Kubernetes executor through the real `kubernetes` client against the API double."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from bot.config.settings import Settings
from bot.executors import kubernetes as executor_module
from bot.executors import manifests
from bot.executors.base import RunSpec, SandboxLimits, SandboxPhase, SandboxSecrets, SandboxStatus
from bot.executors.kube_status import Graces
from bot.executors.kubernetes import API_PERMISSIONS, KubernetesAPIError, KubernetesExecutor
from tests.fakes import kubeapi
from tests.fakes.kubeapi import KubeAPI

# The API double's fixture, for as long as tests/conftest.py does not load it as a plugin.
kube_api = kubeapi.kube_api

IMAGE = "ghcr.io/agentbot/agentbot-sandbox:0.1.0"
SECRETS = SandboxSecrets(gateway_token="agw_5_sandboxGatewayCredential0123456789abcdefABC",
                         callback_token="cbtok-5f1d2e3c4b5a69788796a5b4c3d2e1f0")
Stream = AsyncIterator[SandboxStatus]
# The executor's declared calls, one (group, resource, verb) each: what the chart's Role grants.
PERMITTED = {(group, resource, verb)
             for (group, resource), verbs in API_PERMISSIONS.items() for verb in verbs}


@pytest.fixture(autouse=True)
def calls_within_the_role(kube_api: KubeAPI) -> Iterator[None]:
    """Every request any test here makes through the executor is one the Role grants."""
    yield
    undeclared = kube_api.rbac_calls() - PERMITTED
    assert not undeclared, f"calls the executor does not declare: {sorted(undeclared)}"


def run_spec(run_id: int) -> RunSpec:
    return RunSpec(run_id=run_id, repository="octo/widgets",
                   clone_url="https://github.com/octo/widgets.git", base_ref="main",
                   base_sha="a" * 40, branch=f"agentbot/run-{run_id}", prompt="Fix it",
                   agent="claude", model=None, setup=[],
                   limits=SandboxLimits(900, 120, 20, 1 << 20),
                   callback_url=f"http://agentbot:8081/internal/runs/{run_id}")


@pytest.fixture
async def api_client(kube_api: KubeAPI) -> AsyncIterator[client.ApiClient]:
    api = client.ApiClient(kube_api.configuration())
    yield api
    api.close()


class Statuses:
    """Collects an executor's status stream in the background, so a wait can time out safely."""

    def __init__(self, executor: KubernetesExecutor) -> None:
        self.queue: asyncio.Queue[SandboxStatus] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._pump(executor.statuses()))

    async def _pump(self, stream: Stream) -> None:
        async for status in stream:
            self.queue.put_nowait(status)

    async def next(self, timeout: float = 5.0) -> SandboxStatus:  # noqa: ASYNC109
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def quiet(self, period: float = 0.3) -> None:
        """Nothing more arrives within `period` seconds."""
        await asyncio.sleep(period)
        assert self.queue.empty(), f"unexpected {self.queue.get_nowait()}"


@pytest.fixture
async def make_executor(kube_api: KubeAPI, api_client: client.ApiClient
                        ) -> AsyncIterator[Callable[..., KubernetesExecutor]]:
    made: list[KubernetesExecutor] = []

    def make(**overrides: Any) -> KubernetesExecutor:
        options: dict[str, Any] = dict(
            namespace=kube_api.namespace, image=IMAGE, runtime_class="runsc",
            api_client=api_client, backoff_base=0.01,
            backoff_max=0.05, watch_timeout_seconds=30,
            graces=Graces(pod_create=30, pod_start=30, unschedulable=30))
        options.update(overrides)
        executor = KubernetesExecutor(**options)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        await executor.close()


@pytest.fixture
async def executor(make_executor: Callable[..., KubernetesExecutor]
                   ) -> AsyncIterator[KubernetesExecutor]:
    yield make_executor()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def watched(executor: KubernetesExecutor) -> Statuses:
    """The executor's statuses, once both of its watches are in sync."""
    statuses = Statuses(executor)
    await until(lambda: executor.watching)
    return statuses


async def started(kube_api: KubeAPI, executor: KubernetesExecutor, run_id: int) -> Statuses:
    """Watch, start the run, and wait for its PENDING status and its pod."""
    statuses = await watched(executor)
    await executor.start(run_spec(run_id), SECRETS)
    assert (await statuses.next()).phase is SandboxPhase.PENDING
    await until(lambda: bool(kube_api.pods_of(f"agentbot-run-{run_id}")))
    return statuses


def requests(kube_api: KubeAPI, method: str, path_end: str,
             watch: bool | None = None) -> list[dict[str, str]]:
    return [query for m, path, query in kube_api.requests
            if m == method and path.endswith(path_end)
            and (watch is None or (query.get("watch") == "true") == watch)]


# --- start and cancel ------------------------------------------------------------------------


async def test_start_creates_the_job_then_its_secret_owned_by_it(
        kube_api: KubeAPI, executor: KubernetesExecutor) -> None:
    await executor.start(run_spec(5), SECRETS)
    job = kube_api.job("agentbot-run-5")
    secret = kube_api.secret("agentbot-run-5")
    assert [plural for plural, _ in kube_api.received] == ["jobs", "secrets"]
    assert secret["metadata"]["ownerReferences"] == [{
        "apiVersion": "batch/v1", "kind": "Job", "name": "agentbot-run-5",
        "uid": job["metadata"]["uid"], "blockOwnerDeletion": False}]
    values = kube_api.secret_values("agentbot-run-5")
    assert values["gateway-token"] == SECRETS.gateway_token
    assert values["callback-token"] == SECRETS.callback_token
    assert json.loads(values["spec.json"]) == run_spec(5).to_json_dict()
    assert job["spec"]["template"]["spec"]["runtimeClassName"] == "runsc"


async def test_the_bodies_sent_are_what_the_dry_run_shows(
        kube_api: KubeAPI, executor: KubernetesExecutor) -> None:
    settings = Settings(_env_file=None, namespace=kube_api.namespace,  # type: ignore[call-arg]
                        sandbox_image=IMAGE, runtime_class="runsc")
    await executor.start(run_spec(6), SECRETS)
    job_doc, secret_doc = yaml.safe_load_all(
        manifests.render_dry_run(run_spec(6), SECRETS, settings))
    (_, sent_job), (_, sent_secret) = kube_api.received
    assert sent_job == job_doc
    uid = kube_api.job("agentbot-run-6")["metadata"]["uid"]
    secret_doc["metadata"]["ownerReferences"][0]["uid"] = uid
    assert manifests.redact_secret(sent_secret) == secret_doc


async def test_a_second_start_is_a_no_op(kube_api: KubeAPI,
                                         executor: KubernetesExecutor) -> None:
    await executor.start(run_spec(7), SECRETS)
    uid = kube_api.job("agentbot-run-7")["metadata"]["uid"]
    await executor.start(run_spec(7), SECRETS)
    assert kube_api.job("agentbot-run-7")["metadata"]["uid"] == uid
    assert len(kube_api.store.list("jobs", kube_api.namespace, lambda o: True)) == 1
    assert executor.api_errors == 0


async def test_start_after_a_crash_between_job_and_secret_reads_the_jobs_uid(
        kube_api: KubeAPI, executor: KubernetesExecutor,
        api_client: client.ApiClient) -> None:
    body = manifests.job_manifest_for(run_spec(8), executor.options)
    created = await asyncio.to_thread(client.BatchV1Api(api_client).create_namespaced_job,
                                      kube_api.namespace, body)
    await executor.start(run_spec(8), SECRETS)
    owner = kube_api.secret("agentbot-run-8")["metadata"]["ownerReferences"][0]
    assert owner["uid"] == created.metadata.uid
    assert requests(kube_api, "GET", "/jobs/agentbot-run-8")  # read once for the uid


async def test_cancel_deletes_in_the_background_and_the_secret_goes_with_it(
        kube_api: KubeAPI, executor: KubernetesExecutor) -> None:
    statuses = await started(kube_api, executor, 9)
    await executor.cancel(9)
    assert ("jobs", "agentbot-run-9", "Background") in kube_api.deletions
    await until(lambda: not kube_api.exists("secrets", "agentbot-run-9"))
    assert kube_api.pods_of("agentbot-run-9") == []
    assert await statuses.next() == SandboxStatus(9, SandboxPhase.GONE,
                                                  "the run's Job was deleted")
    await executor.cancel(9)  # a missing Job counts as cancelled
    await statuses.quiet()


# --- statuses from Jobs and pods ---------------------------------------------------------------


async def test_a_job_that_completes(kube_api: KubeAPI, executor: KubernetesExecutor) -> None:
    statuses = await started(kube_api, executor, 10)
    kube_api.set_pod_running("agentbot-run-10")
    assert (await statuses.next()).phase is SandboxPhase.RUNNING
    assert kube_api.exists("secrets", "agentbot-run-10")  # the pod still mounts it
    kube_api.set_pod_terminated("agentbot-run-10", 0)
    kube_api.set_job_condition("agentbot-run-10", "Complete")
    assert await statuses.next() == SandboxStatus(10, SandboxPhase.SUCCEEDED, exit_code=0)
    # The tokens go at once; the Job stays for its TTL, for its pod to be inspected.
    await until(lambda: not kube_api.exists("secrets", "agentbot-run-10"))
    assert ("secrets", "agentbot-run-10", "Background") in kube_api.deletions
    assert kube_api.exists("jobs", "agentbot-run-10")
    await statuses.quiet()
    # Watched, never polled: no GET of a single Job, one list of Jobs.
    assert not requests(kube_api, "GET", "/jobs/agentbot-run-10")
    assert len(requests(kube_api, "GET", "/jobs", watch=False)) == 1


async def test_a_failed_job_reports_the_exit_code_and_message(
        kube_api: KubeAPI, executor: KubernetesExecutor) -> None:
    statuses = await started(kube_api, executor, 11)
    kube_api.set_pod_running("agentbot-run-11")
    assert (await statuses.next()).phase is SandboxPhase.RUNNING
    # The Job's failure first, its pod's exit code a moment later, as separate watches may.
    kube_api.set_job_condition("agentbot-run-11", "Failed", "BackoffLimitExceeded")
    await asyncio.sleep(0.2)
    kube_api.set_pod_terminated("agentbot-run-11", 3, "setup failed: npm ci exited 1")
    assert await statuses.next() == SandboxStatus(
        11, SandboxPhase.FAILED, "exit code 3: setup failed: npm ci exited 1", exit_code=3)
    await until(lambda: not kube_api.exists("secrets", "agentbot-run-11"))
    await statuses.quiet()


async def test_a_failed_job_without_a_pod_reports_the_condition(
        kube_api: KubeAPI, executor: KubernetesExecutor) -> None:
    kube_api.auto_pods = False
    statuses = await watched(executor)
    await executor.start(run_spec(12), SECRETS)
    assert (await statuses.next()).phase is SandboxPhase.PENDING
    kube_api.set_job_condition("agentbot-run-12", "Failed", "BackoffLimitExceeded")
    assert await statuses.next() == SandboxStatus(
        12, SandboxPhase.FAILED,
        "BackoffLimitExceeded: Job has reached the specified backoff limit")


async def test_deadline_exceeded_is_a_timeout(kube_api: KubeAPI,
                                              executor: KubernetesExecutor) -> None:
    statuses = await started(kube_api, executor, 13)
    kube_api.set_pod_running("agentbot-run-13")
    assert (await statuses.next()).phase is SandboxPhase.RUNNING
    kube_api.set_job_condition("agentbot-run-13", "Failed", "DeadlineExceeded")
    assert await statuses.next() == SandboxStatus(
        13, SandboxPhase.TIMED_OUT, "DeadlineExceeded: Job was active longer than specified "
        "deadline")


# --- pods that never start ---------------------------------------------------------------------


async def test_image_pull_backoff_fails_the_run_and_removes_the_job(
        kube_api: KubeAPI, executor: KubernetesExecutor) -> None:
    statuses = await started(kube_api, executor, 14)
    kube_api.set_pod_waiting("agentbot-run-14", "ImagePullBackOff",
                             f'Back-off pulling image "{IMAGE}"')
    assert await statuses.next() == SandboxStatus(
        14, SandboxPhase.FAILED, f'ImagePullBackOff: Back-off pulling image "{IMAGE}"')
    await until(lambda: not kube_api.exists("jobs", "agentbot-run-14"))
    assert ("jobs", "agentbot-run-14", "Background") in kube_api.deletions
    await statuses.quiet()  # the deletion that follows is no news


async def test_unschedulable_fails_only_after_the_grace_period(
        kube_api: KubeAPI, make_executor: Callable[..., KubernetesExecutor]) -> None:
    executor = make_executor(graces=Graces(pod_create=30, pod_start=30, unschedulable=1.5))
    statuses = await started(kube_api, executor, 15)
    begun = time.monotonic()
    kube_api.set_pod_unschedulable("agentbot-run-15",
                                   "0/3 nodes are available: 3 Insufficient cpu.")
    failed = await statuses.next()
    # The API's timestamps have whole seconds, so the grace may end up to a second early.
    assert time.monotonic() - begun >= 0.4
    assert failed == SandboxStatus(15, SandboxPhase.FAILED,
                                   "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu.")
    await until(lambda: not kube_api.exists("jobs", "agentbot-run-15"))


async def test_a_missing_runtime_class_fails_the_run_without_reading_events(
        kube_api: KubeAPI, make_executor: Callable[..., KubernetesExecutor]) -> None:
    # The API refuses the Job controller's pod: the Job stays without a pod, active 0, no
    # condition; only an Event (which the Role does not grant) would name the RuntimeClass.
    kube_api.runtime_classes = {"gvisor"}  # the cluster has no "runsc"
    executor = make_executor(graces=Graces(pod_create=0.5, pod_start=30, unschedulable=30))
    statuses = await watched(executor)
    await executor.start(run_spec(16), SECRETS)
    failed = await statuses.next()
    if failed.phase is SandboxPhase.PENDING:  # skipped when the whole-second clock says so
        failed = await statuses.next()
    assert failed == SandboxStatus(16, SandboxPhase.FAILED, (
        "NoPod: no pod was created for the Job within 0.5s (is the RuntimeClass \"runsc\" "
        "installed? A ResourceQuota or an admission policy can also refuse its pods)"))
    await until(lambda: not kube_api.exists("jobs", "agentbot-run-16"))
    await until(lambda: not kube_api.exists("secrets", "agentbot-run-16"))
    assert not requests(kube_api, "GET", "/events")


async def test_a_pod_stuck_creating_its_sandbox_fails_with_its_waiting_reason(
        kube_api: KubeAPI, make_executor: Callable[..., KubernetesExecutor]) -> None:
    # A RuntimeClass whose handler the node lacks: the pod stays in ContainerCreating.
    # Two seconds, as the API's whole-second clock may already have used up one.
    executor = make_executor(graces=Graces(pod_create=30, pod_start=2, unschedulable=30))
    statuses = await started(kube_api, executor, 17)
    kube_api.set_pod_waiting("agentbot-run-17", "ContainerCreating")
    assert await statuses.next(timeout=5) == SandboxStatus(17, SandboxPhase.FAILED, (
        "PodStartTimeout: pod still Pending after 2s (ContainerCreating)"))
    await until(lambda: not kube_api.exists("jobs", "agentbot-run-17"))


# --- the watch: disconnects, 410 Gone, server timeouts, 500s -----------------------------------


async def test_a_dropped_watch_relists_without_losing_or_repeating_a_status(
        kube_api: KubeAPI, executor: KubernetesExecutor) -> None:
    statuses = await started(kube_api, executor, 20)
    kube_api.set_pod_running("agentbot-run-20")
    assert (await statuses.next()).phase is SandboxPhase.RUNNING
    await executor.start(run_spec(21), SECRETS)
    assert (await statuses.next()) == SandboxStatus(21, SandboxPhase.PENDING)
    lists_before = len(requests(kube_api, "GET", "/jobs", watch=False))
    kube_api.drop_watches()
    # Changes while nobody watches: only a new list can show them.
    kube_api.set_job_condition("agentbot-run-20", "Complete")
    kube_api.delete_object("jobs", kube_api.namespace, "agentbot-run-21", "Background")
    seen = {}
    for _ in range(2):
        status = await statuses.next()
        seen[status.run_id] = status
    assert seen == {20: SandboxStatus(20, SandboxPhase.SUCCEEDED, exit_code=0),
                    21: SandboxStatus(21, SandboxPhase.GONE, "the run's Job was deleted")}
    await statuses.quiet()
    assert len(requests(kube_api, "GET", "/jobs", watch=False)) > lists_before
    assert executor.watch_restarts >= 2  # Jobs and pods both listed again
    await until(lambda: executor.watching)


async def test_410_gone_relists_and_the_watch_goes_on(
        kube_api: KubeAPI, executor: KubernetesExecutor) -> None:
    statuses = await started(kube_api, executor, 22)
    kube_api.expire_watches()
    await until(lambda: executor.watch_restarts >= 2)
    await until(lambda: kube_api.open_watches() == 2)
    kube_api.set_pod_running("agentbot-run-22")
    assert (await statuses.next()).phase is SandboxPhase.RUNNING
    kube_api.set_job_condition("agentbot-run-22", "Complete")
    assert (await statuses.next()).phase is SandboxPhase.SUCCEEDED
    await statuses.quiet()
    assert executor.api_errors == 0  # an expired watch is routine, not an error


async def test_a_server_timeout_resumes_from_the_last_resource_version(
        kube_api: KubeAPI, make_executor: Callable[..., KubernetesExecutor]) -> None:
    executor = make_executor(watch_timeout_seconds=1)
    statuses = await started(kube_api, executor, 23)
    # Changes the watch does not select still move the resourceVersion on.
    kube_api.add_event("Pod", "someone-elses-pod", "Pulled", "image pulled", type_="Normal")
    version = kube_api.store.rv
    await until(lambda: len(requests(kube_api, "GET", "/jobs", watch=True)) >= 2, timeout=4)
    first, rewatch = requests(kube_api, "GET", "/jobs", watch=True)[:2]
    assert first["allowWatchBookmarks"] == "true" and first["timeoutSeconds"] == "1"
    # Resumed from the BOOKMARK the server sent as the watch timed out.
    assert rewatch["resourceVersion"] == str(version)
    assert len(requests(kube_api, "GET", "/jobs", watch=False)) == 1  # no new list
    assert executor.watch_restarts == 0
    kube_api.set_job_condition("agentbot-run-23", "Failed", "DeadlineExceeded")
    assert (await statuses.next()).phase is SandboxPhase.TIMED_OUT


async def test_a_compacted_history_answers_410_and_the_executor_lists_again(
        kube_api: KubeAPI, make_executor: Callable[..., KubernetesExecutor]) -> None:
    kube_api.bookmarks = False  # so the watch's resourceVersion falls behind
    executor = make_executor(watch_timeout_seconds=1)
    statuses = await started(kube_api, executor, 24)
    # Other objects move the resourceVersion on; then the history before it is forgotten.
    kube_api.add_event("Pod", "someone-elses-pod", "Pulled", "image pulled", type_="Normal")
    kube_api.compact()
    # When the server ends the watch (after 1 s), resuming from the old version gets 410.
    await until(lambda: executor.watch_restarts >= 2, timeout=4)
    assert executor.api_errors == 0
    kube_api.set_job_condition("agentbot-run-24", "Complete")
    assert (await statuses.next()).phase is SandboxPhase.SUCCEEDED
    await statuses.quiet()


async def test_500s_on_create_are_retried(kube_api: KubeAPI,
                                          executor: KubernetesExecutor) -> None:
    kube_api.fail_next(2, status=500, method="POST", plural="jobs")
    kube_api.fail_next(1, status=503, method="POST", plural="secrets")
    await executor.start(run_spec(30), SECRETS)
    assert kube_api.exists("jobs", "agentbot-run-30")
    assert kube_api.exists("secrets", "agentbot-run-30")
    assert executor.api_errors == 3


async def test_500s_on_list_are_retried_by_the_watch(
        kube_api: KubeAPI, executor: KubernetesExecutor) -> None:
    kube_api.fail_next(3, status=500, method="GET", plural="jobs")
    statuses = await watched(executor)
    assert executor.api_errors == 3
    await executor.start(run_spec(31), SECRETS)
    assert (await statuses.next()).phase is SandboxPhase.PENDING


async def test_lasting_failures_raise_without_secret_values(
        kube_api: KubeAPI, make_executor: Callable[..., KubernetesExecutor],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    executor = make_executor(call_attempts=3)
    kube_api.fail_next(3, status=500, method="POST", plural="secrets")
    with pytest.raises(KubernetesAPIError) as raised:
        await executor.start(run_spec(32), SECRETS)
    assert raised.value.status == 500
    assert str(raised.value) == "create Secret agentbot-run-32: 500 Internal Server Error"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    kube_api.fail_next(5, status=500, method="POST", plural="jobs")
    with pytest.raises(KubernetesAPIError, match="create Job agentbot-run-33: 500 an error"):
        await executor.start(run_spec(33), SECRETS)
    for token in (SECRETS.gateway_token, SECRETS.callback_token):
        assert token not in caplog.text


async def test_a_refused_secret_is_reported_without_the_servers_message(
        kube_api: KubeAPI, executor: KubernetesExecutor) -> None:
    kube_api.fail_next(1, status=403, method="POST", plural="secrets")
    with pytest.raises(KubernetesAPIError) as raised:
        await executor.start(run_spec(34), SECRETS)
    assert str(raised.value) == "create Secret agentbot-run-34: 403 Forbidden"
    assert executor.api_errors == 1  # not retried: 403 will not get better
    # Its pod would wait for the Secret's volume until the deadline: the Job goes at once.
    assert ("jobs", "agentbot-run-34", "Background") in kube_api.deletions
    assert not kube_api.exists("jobs", "agentbot-run-34")


async def test_a_secret_the_client_refuses_is_never_quoted(
        kube_api: KubeAPI, executor: KubernetesExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    real = executor_module.secret_manifest

    def misspelt(*args: Any, **kwargs: Any) -> dict[str, Any]:
        body = real(*args, **kwargs)
        body["stringdata"] = {"token": SECRETS.gateway_token}  # not a Secret field
        return body

    monkeypatch.setattr(executor_module, "secret_manifest", misspelt)
    with pytest.raises(KubernetesAPIError) as raised:
        await executor.start(run_spec(35), SECRETS)
    assert str(raised.value) == "create Secret agentbot-run-35: no answer ValidationError"
    printed = "".join(traceback.format_exception(raised.value))
    assert SECRETS.gateway_token not in printed
    assert not kube_api.exists("secrets", "agentbot-run-35")


# --- reconcile and close -----------------------------------------------------------------------


async def test_the_executor_makes_every_call_the_role_grants(
        kube_api: KubeAPI, make_executor: Callable[..., KubernetesExecutor]) -> None:
    """A run's whole life, restart included, uses each declared call; none is left unused."""
    before = make_executor()
    await before.start(run_spec(70), SECRETS)
    await before.start(run_spec(70), SECRETS)  # 409: the Job is read back for its uid
    await before.start(run_spec(71), SECRETS)
    await before.close()
    after = make_executor()
    await after.reconcile({70, 71})
    statuses = await watched(after)
    await until(lambda: bool(kube_api.pods_of("agentbot-run-70")))
    kube_api.set_pod_terminated("agentbot-run-70", 0)
    kube_api.set_job_condition("agentbot-run-70", "Complete")
    # The pod's exit may show first (RUNNING, as 71 may be PENDING): the Job's verdict follows.
    while (status := await statuses.next()).phase is not SandboxPhase.SUCCEEDED:
        assert status.phase in (SandboxPhase.PENDING, SandboxPhase.RUNNING)
    await until(lambda: not kube_api.exists("secrets", "agentbot-run-70"))
    await after.cancel(71)

    assert kube_api.rbac_calls() == PERMITTED


async def test_reconcile_adopts_running_jobs_and_reports_vanished_ones(
        kube_api: KubeAPI, make_executor: Callable[..., KubernetesExecutor]) -> None:
    before = make_executor()
    await before.start(run_spec(40), SECRETS)
    await before.start(run_spec(41), SECRETS)
    await until(lambda: len(kube_api.pods_of("agentbot-run-40")) == 1)
    kube_api.set_pod_running("agentbot-run-40")
    await before.close()  # the bot restarts

    after = make_executor()
    adopted = await after.reconcile({40, 42})
    assert adopted == [SandboxStatus(40, SandboxPhase.RUNNING),
                       SandboxStatus(42, SandboxPhase.GONE, "the run's Job does not exist")]
    statuses = await watched(after)
    kube_api.set_job_condition("agentbot-run-40", "Complete")
    # The adopted run's RUNNING is not repeated; run 41 was not asked about but is in view.
    seen = [await statuses.next(), await statuses.next()]
    assert SandboxStatus(40, SandboxPhase.SUCCEEDED, exit_code=0) in seen
    assert SandboxStatus(41, SandboxPhase.PENDING) in seen
    await statuses.quiet()


async def test_close_leaves_no_thread_task_or_watch_behind(
        kube_api: KubeAPI, make_executor: Callable[..., KubernetesExecutor]) -> None:
    executor = make_executor()
    statuses = await started(kube_api, executor, 50)
    assert kube_api.open_watches() == 2
    assert any(t.name.startswith("agentbot-kube-watch") for t in threading.enumerate())
    await asyncio.wait_for(executor.close(), 5)
    await asyncio.wait_for(statuses.task, 1)  # the status stream ends
    assert not [t for t in threading.enumerate() if t.name.startswith("agentbot-kube-watch")]
    ours = [t for t in asyncio.all_tasks()
            if "ListWatch" in repr(t.get_coro()) or "KubernetesExecutor" in repr(t.get_coro())]
    assert ours == []
    await until(lambda: kube_api.open_watches() == 0)
    assert kube_api.exists("jobs", "agentbot-run-50")  # sandboxes outlive the bot
    await executor.close()  # twice is fine


def test_from_settings_uses_the_operators_options(kube_api: KubeAPI) -> None:
    settings = Settings(_env_file=None, namespace="sandboxes",  # type: ignore[call-arg]
                        sandbox_image="registry.example/sandbox:3", runtime_class="gvisor",
                        job_ttl_seconds=120, sandbox_memory="2Gi")
    api = client.ApiClient(kube_api.configuration())
    try:
        executor = KubernetesExecutor.from_settings(settings, api_client=api)
        assert executor.options == manifests.SandboxOptions(
            namespace="sandboxes", image="registry.example/sandbox:3", runtime_class="gvisor",
            ttl_seconds=120, cpu="2", memory="2Gi",
            ephemeral_storage="10Gi")
        assert executor.name == "kubernetes"
    finally:
        api.close()


async def test_without_a_client_it_uses_the_kubeconfig(
        kube_api: KubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "double", "cluster": {"server": kube_api.url}}],
        "users": [{"name": "bot", "user": {"token": "kubeconfig-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "double", "user": "bot"}}],
    }))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    executor = KubernetesExecutor(namespace=kube_api.namespace, image=IMAGE)
    try:
        await executor.start(run_spec(60), SECRETS)
        assert kube_api.exists("secrets", "agentbot-run-60")
        assert kube_api.authorizations[-1] == "Bearer kubeconfig-token"
    finally:
        await executor.close()
