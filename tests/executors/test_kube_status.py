"""Reading a Job and its pod as a SandboxStatus, at chosen moments of the grace periods."""

from __future__ import annotations

from typing import Any

from bot.executors.base import SandboxPhase, SandboxStatus
from bot.executors.kube_status import Graces, judge, pod_belongs_to, run_id_of, timestamp

T0 = timestamp("2026-03-01T12:00:00Z") or 0.0
GRACES = Graces(pod_create=60, pod_start=600, unschedulable=300)


def job(conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "agentbot-run-3", "uid": "job-uid",
                         "labels": {"agentbot.dev/run-id": "3"},
                         "creationTimestamp": "2026-03-01T12:00:00Z"},
            "status": {**status, "conditions": conditions or []}}


def pod(phase: str = "Pending", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "agentbot-run-3-abcde", "creationTimestamp":
                         "2026-03-01T12:00:00Z",
                         "labels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
            "status": {"phase": phase, **status}}


def condition(kind: str, reason: str | None = None, message: str | None = None,
              status: str = "True") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def at(seconds: float, the_job: dict[str, Any], the_pod: dict[str, Any] | None = None,
       **kwargs: Any) -> Any:
    kwargs.setdefault("pods_known", True)
    return judge(3, the_job, the_pod, now=T0 + seconds, graces=GRACES, **kwargs)


def test_labels_and_ownership() -> None:
    assert run_id_of(job()) == 3
    assert run_id_of({"metadata": {"labels": {"agentbot.dev/run-id": "x"}}}) is None
    assert pod_belongs_to(pod(), "job-uid")
    assert not pod_belongs_to(pod(), "an-earlier-job-with-the-same-name")


def test_terminal_conditions() -> None:
    assert at(5, job([condition("Complete")])).status == SandboxStatus(
        3, SandboxPhase.SUCCEEDED, exit_code=0)
    assert at(5, job([condition("SuccessCriteriaMet")])).status.phase is SandboxPhase.SUCCEEDED
    timed_out = at(5, job([condition("FailureTarget", "DeadlineExceeded", "too long")]))
    assert timed_out.status == SandboxStatus(3, SandboxPhase.TIMED_OUT,
                                             "DeadlineExceeded: too long")
    # A condition that is not "True" decides nothing.
    assert at(5, job([condition("Failed", "X", status="False")]), pod()).status.phase \
        is SandboxPhase.PENDING


def test_unschedulable_waits_for_its_grace() -> None:
    stuck = pod(conditions=[{"type": "PodScheduled", "status": "False",
                             "reason": "Unschedulable", "message": "no nodes",
                             "lastTransitionTime": "2026-03-01T12:01:00Z"}])
    early = at(200, job(active=1), stuck)
    assert early.status.phase is SandboxPhase.PENDING and not early.stuck
    assert early.recheck_at == T0 + 60 + 300
    late = at(360, job(active=1), stuck)
    assert late.stuck and late.status.reason == "Unschedulable: no nodes"


def test_a_pending_pod_gets_its_start_grace() -> None:
    creating = pod(containerStatuses=[{"state": {"waiting": {"reason": "ContainerCreating"}}}])
    early = at(599, job(active=1), creating)
    assert early.status.phase is SandboxPhase.PENDING and early.recheck_at == T0 + 600
    late = at(600, job(active=1), creating)
    assert late.stuck
    assert late.status.reason == "PodStartTimeout: pod still Pending after 600s " \
                                 "(ContainerCreating)"


def test_fatal_waiting_reasons_fail_at_once() -> None:
    for reason in ("ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"):
        waiting = pod(initContainerStatuses=[], containerStatuses=[
            {"state": {"waiting": {"reason": reason, "message": "why"}}}])
        verdict = at(1, job(active=1), waiting)
        assert verdict.stuck and verdict.status.reason == f"{reason}: why"


def test_a_job_without_a_pod() -> None:
    assert at(30, job(), None).status.phase is SandboxPhase.PENDING
    assert at(30, job(), None).recheck_at == T0 + 60
    assert at(61, job(), None).stuck
    # Only an Event would say why the API refused the pod: the reason names the usual causes.
    assert at(61, job(), None).status.reason == (
        "NoPod: no pod was created for the Job within 60s (a ResourceQuota or an admission "
        "policy can refuse its pods)")
    with_runtime_class = job()
    with_runtime_class["spec"] = {"template": {"spec": {"runtimeClassName": "runsc"}}}
    assert 'is the RuntimeClass "runsc" installed?' in at(61, with_runtime_class).status.reason
    # Not while the pod list is unknown, nor while the Job counts an active pod.
    assert not at(61, job(), None, pods_known=False).stuck
    assert not at(61, job(active=1), None).stuck
    # A pod that came and went: nothing to say until the Job controller decides.
    assert at(61, job(), None, pod_seen=True).status is None
    assert at(61, job(failed=1), None).status is None
    assert at(61, job(ready=1), None).status == SandboxStatus(3, SandboxPhase.RUNNING)


def test_a_finished_pod_is_running_until_the_job_says_otherwise() -> None:
    assert at(5, job(active=1), pod("Failed")).status.phase is SandboxPhase.RUNNING
    terminated = pod("Failed", containerStatuses=[
        {"state": {"terminated": {"exitCode": 4, "reason": "Error"}}}])
    failed = at(5, job([condition("Failed", "BackoffLimitExceeded", "limit")]), terminated)
    assert failed.status == SandboxStatus(3, SandboxPhase.FAILED, "exit code 4: Error",
                                          exit_code=4)


def test_long_reasons_are_clipped() -> None:
    verdict = at(5, job([condition("Failed", "X", "y" * 5000)]))
    assert verdict.status.reason is not None and len(verdict.status.reason) == 1000
