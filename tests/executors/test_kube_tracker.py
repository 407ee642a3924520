"""What the Kubernetes executor's tracker keeps per run lasts no longer than the run (issue 15,
item 5): through the real client against the API double, runs that succeed, fail, get stuck
and are cancelled leave nothing behind once their Jobs go."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bot.executors.base import SandboxPhase, SandboxStatus
from bot.executors.kube_tracker import SandboxTracker
from bot.executors.kubernetes import KubernetesExecutor
from tests.executors import test_kubernetes as kube
from tests.fakes.kubeapi import KubeAPI

# The fixtures of the executor's tests, shared rather than copied.
kube_api = kube.kube_api
api_client = kube.api_client
make_executor = kube.make_executor
executor = kube.executor
calls_within_the_role = kube.calls_within_the_role


def kept(tracker: SandboxTracker) -> dict[str, Any]:
    """Every per-run map of the tracker, by name."""
    return {name: getattr(tracker, name) for name in
            ("_jobs", "_pods", "_pod_seen", "_last", "_timers", "_failing", "_failed_at")}


def expire(kube_api: KubeAPI, run_id: int) -> None:
    """What the TTL controller does to a finished Job: delete it, its pod with it."""
    kube_api.delete_object("jobs", kube_api.namespace, f"agentbot-run-{run_id}", "Background")


async def test_a_run_that_ends_leaves_only_its_last_status_until_its_job_goes(
        kube_api: KubeAPI, executor: KubernetesExecutor) -> None:
    tracker = executor._tracker  # noqa: SLF001 - its memory is what this test is about
    statuses = await kube.started(kube_api, executor, 60)
    kube_api.set_pod_running("agentbot-run-60")
    assert (await statuses.next()).phase is SandboxPhase.RUNNING
    # The Job's failure before its pod's exit code: the tracker waits for the code.
    kube_api.set_job_condition("agentbot-run-60", "Failed", "BackoffLimitExceeded")
    await asyncio.sleep(0.2)
    assert tracker._failed_at and tracker._pod_seen  # noqa: SLF001
    kube_api.set_pod_terminated("agentbot-run-60", 3, "setup failed")
    assert (await statuses.next()).phase is SandboxPhase.FAILED
    # Ended: what the verdict needed is gone; the last status stays while the Job does, so
    # that later changes to it are no news.
    assert tracker._failed_at == {} and tracker._pod_seen == set()  # noqa: SLF001
    assert set(tracker._last) == {60}  # noqa: SLF001
    kube_api.set_job_condition("agentbot-run-60", "Failed", "BackoffLimitExceeded")
    await statuses.quiet()
    assert tracker._pod_seen == set()  # noqa: SLF001 - a settled run is not judged again

    expire(kube_api, 60)
    await kube.until(lambda: not tracker._jobs)  # noqa: SLF001
    await statuses.quiet()  # its deletion is no news either
    await kube.until(lambda: not tracker._pods)  # noqa: SLF001
    assert all(not held for held in kept(tracker).values()), kept(tracker)


async def test_many_runs_of_every_ending_leave_the_tracker_empty(
        kube_api: KubeAPI, make_executor: Callable[..., KubernetesExecutor]) -> None:
    executor = make_executor()
    tracker = executor._tracker  # noqa: SLF001
    statuses = await kube.watched(executor)
    for round_ in range(5):
        base = 100 + 10 * round_
        done, failed, stuck, cancelled = base, base + 1, base + 2, base + 3
        for run_id in (done, failed, stuck, cancelled):
            await executor.start(kube.run_spec(run_id), kube.SECRETS)
        await kube.until(lambda b=base: all(kube_api.pods_of(f"agentbot-run-{r}")
                                            for r in range(b, b + 4)))
        kube_api.set_pod_terminated(f"agentbot-run-{done}", 0)
        kube_api.set_job_condition(f"agentbot-run-{done}", "Complete")
        kube_api.set_pod_terminated(f"agentbot-run-{failed}", 1, "tests failed")
        kube_api.set_job_condition(f"agentbot-run-{failed}", "Failed", "BackoffLimitExceeded")
        kube_api.set_pod_waiting(f"agentbot-run-{stuck}", "ImagePullBackOff", "no such image")
        await executor.cancel(cancelled)
        seen: dict[int, SandboxStatus] = {}
        while len(seen) < 4:
            status = await statuses.next()
            if status.phase is not SandboxPhase.PENDING:
                seen[status.run_id] = status
        assert {r: s.phase for r, s in seen.items()} == {
            done: SandboxPhase.SUCCEEDED, failed: SandboxPhase.FAILED,
            stuck: SandboxPhase.FAILED, cancelled: SandboxPhase.GONE}
        # The stuck run's Job is removed by the executor, the cancelled one's by the cancel;
        # the finished ones go with their TTL.
        await kube.until(lambda s=stuck: not kube_api.exists("jobs", f"agentbot-run-{s}"))
        expire(kube_api, done)
        expire(kube_api, failed)
        await kube.until(lambda: not tracker._jobs and not tracker._pods)  # noqa: SLF001
        await kube.until(lambda: not tracker._failing)  # noqa: SLF001
        assert all(not held for held in kept(tracker).values()), kept(tracker)
    await statuses.quiet()
