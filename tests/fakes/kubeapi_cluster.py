"""The API double's cluster side: a minimal Job controller, garbage collector and test levers."""

from __future__ import annotations

import asyncio
import base64
import secrets as random_tokens
from typing import Any

from tests.fakes.kubeapi_store import NotFound, Obj, Store, rfc3339

CONTROLLER_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
DEFAULT_MESSAGES = {
    "DeadlineExceeded": "Job was active longer than specified deadline",
    "BackoffLimitExceeded": "Job has reached the specified backoff limit",
}


def _later(callback: Any, *args: Any) -> None:
    """Run a controller step after the current request, as the real controllers lag a bit."""
    try:
        asyncio.get_running_loop().call_soon(callback, *args)
    except RuntimeError:
        callback(*args)


class Cluster:
    """What a cluster does behind the API: Job -> pod, ownerReference GC, status changes."""

    def __init__(self, *, namespace: str = "agentbot", history_size: int = 200,
                 auto_pods: bool = True, runtime_classes: set[str] | None = None) -> None:
        self.store = Store(history_size=history_size)
        self.namespace = namespace
        self.auto_pods = auto_pods  # False: Jobs get no pod, like a controller that is down
        self.runtime_classes = runtime_classes  # None: every RuntimeClass exists
        self.deletions: list[tuple[str, str, str]] = []  # (plural, name, propagationPolicy)

    # --- reading -------------------------------------------------------------------

    def job(self, name: str) -> Obj:
        """The stored Job."""
        return self.store.get("jobs", self.namespace, name)

    def secret(self, name: str) -> Obj:
        """The stored Secret (values base64 in `data`, as the API server keeps them)."""
        return self.store.get("secrets", self.namespace, name)

    def secret_values(self, name: str) -> dict[str, str]:
        """The stored Secret's values, decoded."""
        data = self.secret(name).get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def pods_of(self, job_name: str) -> list[Obj]:
        """The pods the Job controller created for this Job."""
        return [p for p in self.store.list("pods", self.namespace, lambda o: True)
                if p["metadata"]["labels"].get(JOB_NAME_LABELS[0]) == job_name]

    def exists(self, plural: str, name: str) -> bool:
        """Whether the object is stored."""
        return (plural, self.namespace, name) in self.store.objects

    # --- garbage collection ----------------------------------------------------------

    def delete_object(self, plural: str, namespace: str, name: str, policy: str) -> Obj:
        """Delete as the API server does for this propagation policy."""
        self.deletions.append((plural, name, policy))
        obj = self.store.get(plural, namespace, name)
        uid = obj["metadata"]["uid"]
        if policy == "Foreground":
            self._collect(uid)
        elif policy == "Orphan":
            for dep_plural, dependent in self.store.dependents(uid):
                self.store.update(dep_plural, dependent["metadata"]["namespace"],
                                  dependent["metadata"]["name"], lambda o, u=uid: o["metadata"]
                                  .__setitem__("ownerReferences", [
                                      r for r in o["metadata"]["ownerReferences"]
                                      if r.get("uid") != u]))
        deleted = self.store.delete(plural, namespace, name)
        if policy == "Background":
            _later(self._collect, uid)
        return deleted

    def _collect(self, owner_uid: str) -> None:
        for plural, dependent in self.store.dependents(owner_uid):
            owners = dependent["metadata"].get("ownerReferences", [])
            # A dependent lives on while any of its other owners does.
            if any(self.store.by_uid(o["uid"]) for o in owners if o.get("uid") != owner_uid):
                continue
            meta = dependent["metadata"]
            try:
                self.delete_object(plural, meta["namespace"], meta["name"], "Background")
            except NotFound:
                pass

    def after_create(self, plural: str, obj: Obj) -> None:
        """Controllers' reaction to a new object."""
        owners = obj["metadata"].get("ownerReferences") or []
        if owners and not any(self.store.by_uid(o.get("uid", "")) for o in owners):
            # The GC removes objects whose owners are all gone, created late or not.
            _later(self._collect_orphan, plural, obj["metadata"]["name"])
        if plural == "jobs":
            _later(self._job_controller, obj["metadata"]["name"], obj["metadata"]["uid"])

    def _collect_orphan(self, plural: str, name: str) -> None:
        if self.exists(plural, name):
            self.delete_object(plural, self.namespace, name, "Background")

    def default_job(self, job: Obj) -> None:
        """Fill the fields the API server defaults on a new Job."""
        uid = job["metadata"]["uid"]
        spec = job["spec"]
        for key, value in (("completions", 1), ("parallelism", 1), ("suspend", False),
                           ("completionMode", "NonIndexed"),
                           ("podReplacementPolicy", "TerminatingOrFailed")):
            spec.setdefault(key, value)
        spec["selector"] = {"matchLabels": {CONTROLLER_LABELS[0]: uid}}
        labels = spec["template"].setdefault("metadata", {}).setdefault("labels", {})
        name = job["metadata"]["name"]
        labels.update({CONTROLLER_LABELS[0]: uid, CONTROLLER_LABELS[1]: uid,
                       JOB_NAME_LABELS[0]: name, JOB_NAME_LABELS[1]: name})
        job["status"] = {}

    def _job_controller(self, name: str, uid: str) -> None:
        try:
            job = self.job(name)
        except NotFound:
            return
        if job["metadata"]["uid"] != uid or not self.auto_pods:
            return
        template = job["spec"]["template"]
        runtime_class = template["spec"].get("runtimeClassName")
        if self.runtime_classes is not None and runtime_class \
                and runtime_class not in self.runtime_classes:
            self.add_event("Job", name, "FailedCreate",
                           f'Error creating: pods "{name}-" is forbidden: pod rejected: '
                           f'RuntimeClass "{runtime_class}" not found')
            return
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": f"{name}-{random_tokens.token_hex(3)[:5]}",
                "labels": dict(template["metadata"]["labels"]),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                     "uid": uid, "controller": True,
                                     "blockOwnerDeletion": True}],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending", "qosClass": "Guaranteed"},
        }
        self.store.create("pods", self.namespace, pod)
        self._job_status(name, active=1, ready=0, startTime=rfc3339())

    # --- levers for tests ---------------------------------------------------------------

    def _job_status(self, name: str, **fields: Any) -> Obj:
        return self.store.update("jobs", self.namespace, name,
                                 lambda job: job.setdefault("status", {}).update(fields))

    def set_job_condition(self, name: str, condition: str, reason: str | None = None,
                          message: str | None = None) -> Obj:
        """Finish a Job as its controller would: `Complete` or `Failed` with a reason."""
        now = rfc3339()
        entry = {"type": condition, "status": "True", "lastProbeTime": now,
                 "lastTransitionTime": now}
        if reason:
            entry.update(reason=reason, message=message or DEFAULT_MESSAGES.get(reason, reason))
        counts = {"succeeded": 1} if condition == "Complete" else {"failed": 1}
        if condition == "Complete":
            counts["completionTime"] = now

        def finish(job: Obj) -> None:
            status = job.setdefault("status", {})
            status.update(active=0, ready=0, **counts)
            status.setdefault("conditions", []).append(entry)

        return self.store.update("jobs", self.namespace, name, finish)

    def _update_pod(self, job_name: str, status: dict[str, Any]) -> Obj:
        pods = self.pods_of(job_name)
        if not pods:
            raise NotFound(f"no pod for Job {job_name}")
        return self.store.update("pods", self.namespace, pods[-1]["metadata"]["name"],
                                 lambda pod: pod["status"].update(status))

    def _container(self, job_name: str, state: dict[str, Any], ready: bool) -> dict[str, Any]:
        image = self.job(job_name)["spec"]["template"]["spec"]["containers"][0]["image"]
        return {"name": "sandbox", "image": image, "imageID": "", "ready": ready,
                "restartCount": 0, "started": ready, "state": state}

    def set_pod_running(self, job_name: str) -> Obj:
        """The Job's pod starts its container."""
        now = rfc3339()
        pod = self._update_pod(job_name, {
            "phase": "Running", "startTime": now,
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                           for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [self._container(job_name, {"running": {"startedAt": now}},
                                                  True)],
        })
        self._job_status(job_name, ready=1)
        return pod

    def set_pod_waiting(self, job_name: str, reason: str, message: str = "") -> Obj:
        """The Job's pod is scheduled but its container waits (`ImagePullBackOff`, ...)."""
        now = rfc3339()
        waiting = {"reason": reason, **({"message": message} if message else {})}
        return self._update_pod(job_name, {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now}],
            "containerStatuses": [self._container(job_name, {"waiting": waiting}, False)],
        })

    def set_pod_unschedulable(self, job_name: str, message: str,
                              since: float | None = None) -> Obj:
        """The scheduler finds no node for the Job's pod (since `since`, epoch seconds)."""
        return self._update_pod(job_name, {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": message, "lastTransitionTime": rfc3339(since)}],
        })

    def set_pod_terminated(self, job_name: str, exit_code: int, message: str = "") -> Obj:
        """The Job's container exits with this code and termination message."""
        now = rfc3339()
        terminated = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                      "startedAt": now, "finishedAt": now,
                      **({"message": message} if message else {})}
        return self._update_pod(job_name, {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [self._container(job_name, {"terminated": terminated}, False)],
        })

    def add_event(self, kind: str, name: str, reason: str, message: str,
                  type_: str = "Warning") -> Obj:
        """Record an Event about an object, as kubelets and controllers do."""
        now = rfc3339()
        plural = {"Job": "jobs", "Pod": "pods"}.get(kind, kind.lower() + "s")
        uid = self.store.objects.get((plural, self.namespace, name), {}) \
            .get("metadata", {}).get("uid", "")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{random_tokens.token_hex(8)}"},
            "involvedObject": {"kind": kind, "name": name, "namespace": self.namespace,
                               "uid": uid},
            "reason": reason, "message": message, "type": type_, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now, "source": {"component": "fake"},
        }
        return self.store.create("events", self.namespace, event)
