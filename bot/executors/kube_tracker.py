"""The sandbox Jobs and pods in view, turned into SandboxStatus changes reported once each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from bot.executors.base import SandboxPhase, SandboxStatus
from bot.executors.kube_status import (
    TERMINAL_PHASES,
    Graces,
    Verdict,
    judge,
    pod_belongs_to,
    run_id_of,
    timestamp,
    uid_of,
)

JOBS, PODS = "jobs", "pods"
EXIT_CODE_WAIT = 2.0  # seconds a failed Job's pod may lag behind it in the pod watch
Obj = dict[str, Any]
# Called with the run id, the Job's uid and the FAILED status.
OnStuck = Callable[[int, "str | None", SandboxStatus], None]
# Called with the run id when its sandbox has ended: succeeded, failed or timed out.
OnFinal = Callable[[int], None]


class SandboxTracker:
    """Holds the latest Job and pod of each run, as lists and watch events deliver them, and
    queues a run's status whenever it changes. Runs on the event loop; never calls the API.

    What it keeps per run lasts no longer than the run: what the verdict needs (pods seen,
    failures awaiting an exit code) goes with the final status; the last status itself, which
    keeps that final one from being reported again, goes with the Job (its TTL, a cancel).
    """

    def __init__(self, *, graces: Graces, on_stuck: OnStuck, pods_known: Callable[[], bool],
                 on_final: OnFinal = lambda run_id: None) -> None:
        self.queue: asyncio.Queue[SandboxStatus | None] = asyncio.Queue()
        self._graces, self._on_stuck, self._pods_known = graces, on_stuck, pods_known
        self._on_final = on_final
        self._jobs: dict[int, Obj] = {}
        self._pods: dict[int, Obj] = {}
        self._pod_seen: set[str] = set()  # uids of Jobs whose pod has been in view
        self._last: dict[int, tuple[str | None, SandboxStatus]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._failing: set[int] = set()  # stuck runs whose FAILED status is being prepared
        self._failed_at: dict[str, float] = {}  # Job uid -> when its failure was first seen
        self._closed = False

    def on_list(self, kind: str, items: list[Obj]) -> None:
        """A fresh list replaces what was in view; Jobs missing from it were deleted."""
        latest: dict[int, Obj] = {}
        for obj in items:
            run_id = run_id_of(obj)
            if run_id is not None and (run_id not in latest or _newer(obj, latest[run_id])):
                latest[run_id] = obj
        if kind == JOBS:
            for run_id in set(self._jobs) - set(latest):  # deleted while nobody watched
                self._job_gone(run_id, self._jobs.pop(run_id))
            for run_id, job in latest.items():
                if run_id in self._jobs and uid_of(self._jobs[run_id]) != uid_of(job):
                    self._forget_job(uid_of(self._jobs[run_id]))  # replaced by a new Job
            self._jobs = latest
        else:
            self._pods = latest
        for run_id in list(self._jobs):
            self.evaluate(run_id)

    def on_event(self, kind: str, event_type: str, obj: Obj) -> None:
        """One ADDED, MODIFIED or DELETED event of a Job or pod."""
        run_id = run_id_of(obj)
        if run_id is None or self._closed:
            return
        cache = self._jobs if kind == JOBS else self._pods
        current = cache.get(run_id)
        if event_type == "DELETED":
            if current is not None and uid_of(current) == uid_of(obj):
                del cache[run_id]
                if kind == JOBS:
                    self._job_gone(run_id, obj)
        elif current is None or uid_of(current) == uid_of(obj) or _newer(obj, current):
            if kind == JOBS and current is not None and uid_of(current) != uid_of(obj):
                self._forget_job(uid_of(current))  # replaced by a new Job
            cache[run_id] = obj
        self.evaluate(run_id)

    def adopt(self, run_id: int, job: Obj | None, pod: Obj | None) -> SandboxStatus:
        """The status of an active run found by a reconcile, remembered as already reported."""
        if job is None:
            # Nothing in view will speak of this run again: nothing to remember.
            return SandboxStatus(run_id, SandboxPhase.GONE, "the run's Job does not exist")
        self._jobs.setdefault(run_id, job)
        # A Job whose pod has come and gone, with no verdict from its controller yet.
        status = self._decide(run_id, job, pod, pods_known=True) or SandboxStatus(
            run_id, SandboxPhase.RUNNING)
        self._last[run_id] = (uid_of(job), status)
        if status.phase in TERMINAL_PHASES:
            self._cancel_timer(run_id)
            self._forget_job(uid_of(job))
        self._ended(status)
        return status

    def evaluate(self, run_id: int) -> None:
        """Work out a run's status from what is in view and queue it if it changed."""
        job = self._jobs.get(run_id)
        if job is not None and not self._closed and not self._settled(run_id, uid_of(job)):
            status = self._decide(run_id, job, self._pods.get(run_id),
                                  pods_known=self._pods_known())
            if status is not None and run_id not in self._failing:
                self.publish(run_id, uid_of(job), status)

    def publish(self, run_id: int, uid: str | None, status: SandboxStatus) -> None:
        """Queue a status unless it repeats the last one or comes after a final one."""
        last = self._last.get(run_id)
        if last is not None and last[0] == uid and (
                last[1] == status or last[1].phase in TERMINAL_PHASES):
            return
        self._last[run_id] = (uid, status)
        self.queue.put_nowait(status)
        if status.phase in TERMINAL_PHASES:
            self._cancel_timer(run_id)
            self._forget_job(uid)
        self._ended(status)

    def stuck_handled(self, run_id: int) -> None:
        """The executor has reported (or given up reporting) a stuck run."""
        self._failing.discard(run_id)
        if run_id not in self._jobs:  # its Job went meanwhile: the run is over here
            self._last.pop(run_id, None)

    def close(self) -> None:
        """Cancel pending re-checks and end `queue` readers."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.queue.put_nowait(None)

    def _decide(self, run_id: int, job: Obj, pod: Obj | None, *,
                pods_known: bool) -> SandboxStatus | None:
        job_uid = uid_of(job)
        if pod is not None and not pod_belongs_to(pod, job_uid):
            pod = None
        if pod is not None and job_uid:
            self._pod_seen.add(job_uid)
        verdict = judge(run_id, job, pod, pods_known=pods_known, now=time.time(),
                        pod_seen=job_uid in self._pod_seen, graces=self._graces)
        verdict = self._await_exit_code(verdict, job_uid)
        self._cancel_timer(run_id)
        if verdict.recheck_at is not None and not self._closed:
            delay = max(verdict.recheck_at - time.time(), 0) + 0.05
            self._timers[run_id] = asyncio.get_running_loop().call_later(
                delay, self.evaluate, run_id)
        settled = self._settled(run_id, job_uid)
        if verdict.stuck and verdict.status and not settled and run_id not in self._failing:
            self._failing.add(run_id)
            self._on_stuck(run_id, job_uid, verdict.status)
        return verdict.status

    def _await_exit_code(self, verdict: Verdict, job_uid: str | None) -> Verdict:
        """Jobs and pods come down separate watches: when a Job fails before its pod's exit
        code is in view, wait a moment for the pod rather than report a failure without it."""
        status = verdict.status
        if (status is None or status.phase is not SandboxPhase.FAILED or verdict.stuck
                or status.exit_code is not None or job_uid not in self._pod_seen):
            return verdict
        first = self._failed_at.setdefault(job_uid, time.time())
        if time.time() - first >= EXIT_CODE_WAIT:
            return verdict
        return Verdict(None, recheck_at=first + EXIT_CODE_WAIT)

    def _ended(self, status: SandboxStatus) -> None:
        # GONE, or stuck: the Job is deleted (or about to be) and the collector takes the Secret.
        if (status.phase in TERMINAL_PHASES and status.phase is not SandboxPhase.GONE
                and status.run_id not in self._failing):
            self._on_final(status.run_id)

    def _settled(self, run_id: int, job_uid: str | None) -> bool:
        """Whether this Job of the run has had its final status: nothing more to decide."""
        last = self._last.get(run_id)
        return last is not None and last[0] == job_uid and last[1].phase in TERMINAL_PHASES

    def _forget_job(self, job_uid: str | None) -> None:
        """Drop what a Job's verdict needed: it has had its verdict, or it is gone."""
        if job_uid is not None:
            self._pod_seen.discard(job_uid)
            self._failed_at.pop(job_uid, None)

    def _cancel_timer(self, run_id: int) -> None:
        if (timer := self._timers.pop(run_id, None)) is not None:
            timer.cancel()

    def _job_gone(self, run_id: int, job: Obj) -> None:
        self._cancel_timer(run_id)
        self.publish(run_id, uid_of(job),
                     SandboxStatus(run_id, SandboxPhase.GONE, "the run's Job was deleted"))
        self._forget_job(uid_of(job))
        if run_id not in self._failing:  # else its FAILED is on the way: stuck_handled forgets
            self._last.pop(run_id, None)


def _newer(obj: Obj, other: Obj) -> bool:
    def key(o: Obj) -> tuple[float, str]:
        return timestamp(o["metadata"].get("creationTimestamp")) or 0, o["metadata"]["name"]

    return key(obj) >= key(other)
