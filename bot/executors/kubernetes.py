"""The Kubernetes executor: a Job and a Secret per run, one list+watch each of Jobs and pods."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from bot.executors.base import RunSpec, SandboxSecrets, SandboxStatus
from bot.executors.kube_status import Graces, run_id_of
from bot.executors.kube_tracker import JOBS, PODS, SandboxTracker
from bot.executors.kube_watch import ListWatch
from bot.executors.manifests import (
    SANDBOX_SELECTOR,
    SandboxOptions,
    job_manifest_for,
    run_name,
    secret_manifest,
)

log = logging.getLogger(__name__)

RETRYABLE = frozenset({0, 429, 500, 502, 503, 504})  # 0: no HTTP answer at all
Obj = dict[str, Any]
# Every call this module makes, as RBAC sees it; the chart's Role grants exactly this. No
# events, no pod logs: a pod's status says why it never started, and a failed container's
# termination message holds its log's tail (FallbackToLogsOnError).
API_PERMISSIONS: dict[tuple[str, str], frozenset[str]] = {
    ("batch", "jobs"): frozenset({"create", "get", "list", "watch", "delete"}),
    ("", "secrets"): frozenset({"create", "delete"}),
    ("", "pods"): frozenset({"list", "watch"}),
}


class KubernetesAPIError(RuntimeError):
    """A Kubernetes call failed for good; the message never carries a request body."""

    def __init__(self, action: str, status: int, reason: str) -> None:
        super().__init__(f"{action}: {status or 'no answer'} {reason}".strip())
        self.status = status


def _reason(exc: BaseException, sensitive: bool) -> str:
    if not isinstance(exc, ApiException):
        return type(exc).__name__
    if not sensitive:
        try:
            return str(json.loads(exc.body or "{}").get("message", exc.reason))[:300]
        except (ValueError, AttributeError):
            pass
    # What the server says about a Secret may quote a value: keep only the reason phrase.
    return str(exc.reason or "")


def default_api_client() -> client.ApiClient:
    """A client from the pod's service account, else from the kubeconfig."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        # KUBECONFIG read now: the client's own default was fixed when it was imported.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"),
                                client_configuration=configuration)
    return client.ApiClient(configuration)


def _raw(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
    """Call the API function and return its answer as parsed JSON. The client's own models
    cost about 5 ms of CPU to build from a created Job (pydantic checks every nested field),
    the most expensive step of a launch in a burst, and only the Job's uid is read; a list
    is read as the watch delivers it, so one set of code reads both."""
    response = fn(*args, _preload_content=False, **kwargs)
    try:
        body: Obj = json.loads(response.data)
    finally:
        response.release_conn()
    return body


class KubernetesExecutor:
    """Runs each sandbox as a Job; reports Job and pod changes as SandboxStatus values."""

    name = "kubernetes"

    def __init__(self, *, namespace: str, image: str, runtime_class: str | None = None,
                 job_ttl_seconds: int = 3600, cpu: str = "2",
                 memory: str = "4Gi", ephemeral_storage: str = "10Gi",
                 api_client: client.ApiClient | None = None, graces: Graces = Graces(),
                 watch_timeout_seconds: int = 300, backoff_base: float = 0.5,
                 backoff_max: float = 30.0, call_attempts: int = 5) -> None:
        self.options = SandboxOptions(namespace, image, runtime_class,
                                      job_ttl_seconds, cpu, memory, ephemeral_storage)
        self._own_client = api_client is None
        self._api = api_client or default_api_client()
        self._batch, self._core = client.BatchV1Api(self._api), client.CoreV1Api(self._api)
        self._watch_timeout = watch_timeout_seconds
        self._backoff_base, self._backoff_max = backoff_base, backoff_max
        self._call_attempts = call_attempts
        self.watch_restarts = 0  # lists after each watch's first one, for metrics
        self.api_errors = 0  # failed calls and broken watches, for metrics
        self._tracker = SandboxTracker(graces=graces, on_stuck=self._on_stuck,
                                       on_final=self._on_final,
                                       pods_known=lambda: self._watches[PODS].synced)
        self._tasks: set[asyncio.Task[Any]] = set()
        # The two long-lived streams get their own threads rather than pinning the loop's.
        self._threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="agentbot-kube-watch")
        self._watches = {kind: self._new_watch(kind) for kind in (JOBS, PODS)}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> KubernetesExecutor:
        """An executor configured by `AGENTBOT_NAMESPACE`, `AGENTBOT_SANDBOX_IMAGE` and so on."""
        options = dataclasses.asdict(SandboxOptions.from_settings(settings))
        options["job_ttl_seconds"] = options.pop("ttl_seconds")
        return cls(**options, **kwargs)

    @property
    def watching(self) -> bool:
        """True while both watches run and are in sync with the API (for /readyz)."""
        return self._loop is not None and not self._closing and all(
            w.running and w.synced for w in self._watches.values())

    # --- the protocol ----------------------------------------------------------------------

    async def start(self, spec: RunSpec, secrets: SandboxSecrets) -> None:
        """Create the run's Job, then its Secret owned by the Job; existing ones are kept."""
        name, namespace = run_name(spec.run_id), self.options.namespace
        job = await self._call(f"create Job {name}", _raw, self._batch.create_namespaced_job,
                               namespace, job_manifest_for(spec, self.options), expected=409)
        if job is None:  # 409: created before (a retry, or another replica)
            job = await self._call(f"read Job {name}", _raw, self._batch.read_namespaced_job,
                                   name, namespace)
        # The pod waits in ContainerCreating until this Secret, its volume, exists.
        secret = secret_manifest(spec, secrets, namespace=namespace,
                                 job_uid=job["metadata"]["uid"])
        try:
            await self._call(f"create Secret {name}", _raw, self._core.create_namespaced_secret,
                             namespace, secret, expected=409, sensitive=True)
        except Exception:
            # Without its Secret the pod would wait for its volume until the deadline.
            with contextlib.suppress(KubernetesAPIError):
                await self._delete_job(name)
            raise
        log.info("started Job %s", name)
        self._ensure_watching()

    async def cancel(self, run_id: int) -> None:
        """Delete the run's Job; the pod and the Secret follow it (Background propagation)."""
        await self._delete_job(run_name(run_id))

    async def reconcile(self, active_run_ids: set[int]) -> list[SandboxStatus]:
        """Adopt the Jobs of active runs and report GONE for active runs that have none."""
        jobs = {run_id_of(j): j for j in (await self._list(JOBS))[0]}
        pods = {run_id_of(p): p for p in (await self._list(PODS))[0]}
        adopted = [self._tracker.adopt(run_id, jobs.get(run_id), pods.get(run_id))
                   for run_id in sorted(active_run_ids)]
        # Watching starts after adoption, so its first list does not report them again.
        self._ensure_watching()
        return adopted

    async def statuses(self) -> AsyncIterator[SandboxStatus]:
        """Status changes of every sandbox Job in the namespace, each reported once."""
        self._ensure_watching()
        while (status := await self._tracker.queue.get()) is not None:
            yield status

    async def close(self) -> None:
        """Stop both watches and their threads; Jobs keep running."""
        if self._closing:
            return
        self._closing = True
        for watch in self._watches.values():
            watch.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tracker.close()
        await asyncio.to_thread(self._threads.shutdown, wait=True)
        if self._own_client:
            self._api.close()

    # --- calls -----------------------------------------------------------------------------

    async def _call(self, action: str, fn: Callable[..., Any], *args: Any,
                    expected: int | None = None, sensitive: bool = False, **kwargs: Any) -> Any:
        """`fn` in a thread, retried with backoff on 5xx, 429 and lost connections.
        The `expected` error status returns None; any other failure raises KubernetesAPIError."""
        delay = self._backoff_base
        for attempt in range(1, self._call_attempts + 1):
            try:
                return await asyncio.to_thread(fn, *args, **kwargs)
            except ApiException as exc:
                if exc.status == expected:
                    return None
                self.api_errors += 1
                if exc.status not in RETRYABLE or attempt == self._call_attempts:
                    raise KubernetesAPIError(action, exc.status or 0,
                                             _reason(exc, sensitive)) from None
            except urllib3.exceptions.HTTPError as exc:
                self.api_errors += 1
                if attempt == self._call_attempts:
                    raise KubernetesAPIError(action, 0, type(exc).__name__) from None
            except Exception as exc:
                if not sensitive:
                    raise
                # A client-side validation error may quote the body: never let one out.
                raise KubernetesAPIError(action, 0, type(exc).__name__) from None
            log.warning("%s failed (attempt %d of %d)", action, attempt, self._call_attempts)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            delay = min(delay * 2, self._backoff_max)
        raise AssertionError("unreachable")

    def _list_function(self, kind: str) -> Callable[..., Any]:
        return self._batch.list_namespaced_job if kind == JOBS else self._core.list_namespaced_pod

    def _list_sync(self, kind: str) -> tuple[list[Obj], str]:
        body = _raw(self._list_function(kind), self.options.namespace,
                    label_selector=SANDBOX_SELECTOR)
        return body.get("items") or [], body["metadata"]["resourceVersion"]

    async def _list(self, kind: str) -> tuple[list[Obj], str]:
        return await self._call(f"list {kind}", self._list_sync, kind)

    def _open_watch(self, kind: str, version: str) -> Any:
        return self._list_function(kind)(
            self.options.namespace, label_selector=SANDBOX_SELECTOR, watch=True,
            resource_version=version, allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout, _preload_content=False,
            # A read timeout past the server's own ends a connection that silently died.
            _request_timeout=(10, self._watch_timeout + 30))

    async def _delete_secret(self, run_id: int) -> None:
        """Remove a finished sandbox's Secret now rather than with its Job, which stays for
        `ttlSecondsAfterFinished` so its pod can be inspected; the tokens have no use left."""
        name = run_name(run_id)
        try:
            await self._call(f"delete Secret {name}", self._core.delete_namespaced_secret, name,
                             self.options.namespace, expected=404, sensitive=True)
        except KubernetesAPIError as exc:  # the Job's garbage collection takes it later
            log.warning("%s", exc)

    async def _delete_job(self, name: str) -> None:
        # 404 is fine: the Job is gone, which is what was asked.
        await self._call(f"delete Job {name}", self._batch.delete_namespaced_job, name,
                         self.options.namespace, propagation_policy="Background", expected=404)
        log.info("deleted Job %s", name)

    # --- watching --------------------------------------------------------------------------

    def _new_watch(self, kind: str) -> ListWatch:
        def restarted() -> None:
            self.watch_restarts += 1

        def failed() -> None:
            self.api_errors += 1

        return ListWatch(
            kind, list_objects=lambda: self._list_sync(kind),
            open_watch=lambda version: self._open_watch(kind, version),
            on_list=lambda items: self._tracker.on_list(kind, items),
            on_event=lambda event_type, obj: self._tracker.on_event(kind, event_type, obj),
            threads=self._threads, backoff_base=self._backoff_base,
            backoff_max=self._backoff_max, on_restart=restarted, on_error=failed)

    def _ensure_watching(self) -> None:
        if self._loop is not None or self._closing:
            return
        self._loop = asyncio.get_running_loop()
        for watch in self._watches.values():
            self._spawn(watch.run())

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- sandboxes that ended or never start -------------------------------------------------

    def _on_final(self, run_id: int) -> None:
        if not self._closing:
            self._spawn(self._delete_secret(run_id))

    def _on_stuck(self, run_id: int, uid: str | None, status: SandboxStatus) -> None:
        if not self._closing:
            self._spawn(self._fail_stuck(run_id, uid, status))
        else:
            self._tracker.stuck_handled(run_id)

    async def _fail_stuck(self, run_id: int, uid: str | None, status: SandboxStatus) -> None:
        """Fail a run whose pod will never start and remove its Job (its Secret goes with it)."""
        try:
            self._tracker.publish(run_id, uid, status)
            log.warning("run %d cannot start: %s", run_id, status.reason)
            await self._delete_job(run_name(run_id))
        finally:
            self._tracker.stuck_handled(run_id)
