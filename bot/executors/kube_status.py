"""How a sandbox Job and its pod, as the Kubernetes API reports them, read as a SandboxStatus."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.executors.base import SandboxPhase, SandboxStatus
from bot.executors.manifests import RUN_ID_LABEL

# Container waiting reasons after which the kubelet will not get the sandbox started by itself.
FATAL_WAITING_REASONS = frozenset({
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
})
TERMINAL_PHASES = frozenset({
    SandboxPhase.SUCCEEDED, SandboxPhase.FAILED, SandboxPhase.TIMED_OUT, SandboxPhase.GONE,
})
CONTROLLER_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
MAX_REASON = 1000
# The API server refused the Job controller's pods; only an Event (which the Role does not
# grant) would say which check did, so the reason names the likely ones.
NO_POD = "NoPod: no pod was created for the Job within {grace:g}s"
NO_POD_HINT = " (a ResourceQuota or an admission policy can refuse its pods)"
NO_POD_RUNTIME_CLASS_HINT = (' (is the RuntimeClass "{name}" installed? A ResourceQuota or an '
                             "admission policy can also refuse its pods)")


@dataclass(frozen=True)
class Graces:
    """How long a sandbox may wait at each step before the run is failed, in seconds."""

    pod_create: float = 120.0  # Job exists, no pod (quota, a RuntimeClass the API refuses)
    pod_start: float = 900.0  # pod exists but stays Pending (image pull, sandbox runtime)
    unschedulable: float = 300.0  # room for a cluster autoscaler to add a node


@dataclass(frozen=True)
class Verdict:
    """The status a Job reads as, and when to look again if nothing else changes."""

    status: SandboxStatus | None  # None: nothing new to report
    recheck_at: float | None = None  # epoch seconds at which a grace period runs out
    stuck: bool = False  # the pod will never run: fail the run and remove the Job


def run_id_of(obj: dict[str, Any]) -> int | None:
    """The run id label of a Job or pod, or None when it is missing or not a number."""
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(RUN_ID_LABEL)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def uid_of(obj: dict[str, Any]) -> str | None:
    """The object's uid."""
    return (obj.get("metadata") or {}).get("uid")


def pod_belongs_to(pod: dict[str, Any], job_uid: str | None) -> bool:
    """True when the pod was created for the Job with this uid (not an earlier namesake)."""
    metadata = pod.get("metadata") or {}
    labels = metadata.get("labels") or {}
    for key in CONTROLLER_UID_LABELS:
        if key in labels:
            return labels[key] == job_uid
    owners = metadata.get("ownerReferences") or []
    return not owners or any(o.get("uid") == job_uid for o in owners)


def timestamp(value: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 time as the API writes it, or None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _describe(reason: str | None, message: str | None) -> str:
    parts = [p for p in (reason, message) if p]
    return _clip(": ".join(parts)) if parts else "unknown"


def _true_conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return {c.get("type", ""): c for c in conditions if c.get("status") == "True"}


def _container_states(pod: dict[str, Any], key: str) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    states = []
    for group in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(group) or []:
            state = (container.get("state") or {}).get(key)
            if state:
                states.append(state)
    return states


def _finished(run_id: int, failed: dict[str, Any], pod: dict[str, Any] | None) -> SandboxStatus:
    if failed.get("reason") == "DeadlineExceeded":
        return SandboxStatus(run_id, SandboxPhase.TIMED_OUT,
                             _describe("DeadlineExceeded", failed.get("message")))
    terminated = _container_states(pod, "terminated") if pod else []
    for state in terminated:
        code = state.get("exitCode")
        if code not in (None, 0):
            detail = state.get("message") or state.get("reason")
            reason = f"exit code {code}" + (f": {detail.strip()[-MAX_REASON:]}" if detail else "")
            return SandboxStatus(run_id, SandboxPhase.FAILED, _clip(reason), exit_code=code)
    return SandboxStatus(run_id, SandboxPhase.FAILED,
                         _describe(failed.get("reason"), failed.get("message")))


def _pending(run_id: int, pod: dict[str, Any], now: float, graces: Graces) -> Verdict:
    for waiting in _container_states(pod, "waiting"):
        if waiting.get("reason") in FATAL_WAITING_REASONS:
            status = SandboxStatus(run_id, SandboxPhase.FAILED,
                                   _describe(waiting.get("reason"), waiting.get("message")))
            return Verdict(status, stuck=True)
    created = timestamp((pod.get("metadata") or {}).get("creationTimestamp")) or now
    conditions = (pod.get("status") or {}).get("conditions") or []
    for condition in conditions:
        if (condition.get("type") == "PodScheduled" and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"):
            since = timestamp(condition.get("lastTransitionTime")) or created
            deadline = since + graces.unschedulable
            if now >= deadline:
                status = SandboxStatus(run_id, SandboxPhase.FAILED,
                                       _describe("Unschedulable", condition.get("message")))
                return Verdict(status, stuck=True)
            return Verdict(SandboxStatus(run_id, SandboxPhase.PENDING), recheck_at=deadline)
    deadline = created + graces.pod_start
    if now >= deadline:
        reason = f"PodStartTimeout: pod still Pending after {graces.pod_start:g}s"
        waiting = next(iter(_container_states(pod, "waiting")), {})
        if waiting.get("reason"):
            reason += f" ({_describe(waiting.get('reason'), waiting.get('message'))})"
        return Verdict(SandboxStatus(run_id, SandboxPhase.FAILED, _clip(reason)), stuck=True)
    return Verdict(SandboxStatus(run_id, SandboxPhase.PENDING), recheck_at=deadline)


def judge(
    run_id: int,
    job: dict[str, Any],
    pod: dict[str, Any] | None,
    *,
    pods_known: bool,
    pod_seen: bool = False,
    now: float,
    graces: Graces,
) -> Verdict:
    """The status of a run from its Job and its pod. `pod` None: none in view; `pods_known`:
    the pod list is in sync, so None means there is none; `pod_seen`: one was seen before."""
    conditions = _true_conditions(job)
    if "Complete" in conditions or "SuccessCriteriaMet" in conditions:
        return Verdict(SandboxStatus(run_id, SandboxPhase.SUCCEEDED, exit_code=0))
    # FailureTarget comes first on recent clusters, Failed once the pod is gone.
    failed = conditions.get("Failed") or conditions.get("FailureTarget")
    if failed is not None:
        return Verdict(_finished(run_id, failed, pod))
    if pod is not None:
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Running", "Succeeded", "Failed"):
            # A finished pod is still a running run until the Job controller says how it ended.
            return Verdict(SandboxStatus(run_id, SandboxPhase.RUNNING))
        return _pending(run_id, pod, now, graces)
    job_status = job.get("status") or {}
    if (job_status.get("ready") or 0) > 0:
        return Verdict(SandboxStatus(run_id, SandboxPhase.RUNNING))
    if pod_seen or any(job_status.get(k) for k in ("failed", "succeeded", "terminating")):
        # Its pod existed and is gone: no news until the Job controller says how it ended.
        return Verdict(None)
    if not pods_known or (job_status.get("active") or 0) > 0:
        # The Job controller counts a pod our view has not caught up with yet.
        return Verdict(SandboxStatus(run_id, SandboxPhase.PENDING))
    created = timestamp((job.get("metadata") or {}).get("creationTimestamp")) or now
    deadline = created + graces.pod_create
    if now >= deadline:
        pod_spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
        runtime_class = pod_spec.get("runtimeClassName")
        hint = (NO_POD_RUNTIME_CLASS_HINT.format(name=runtime_class) if runtime_class
                else NO_POD_HINT)
        reason = NO_POD.format(grace=graces.pod_create) + hint
        return Verdict(SandboxStatus(run_id, SandboxPhase.FAILED, reason), stuck=True)
    return Verdict(SandboxStatus(run_id, SandboxPhase.PENDING), recheck_at=deadline)
