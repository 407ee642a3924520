"""Label to pull request through the Kubernetes executor: the API double keeps the Job and
Secret, and the Job's pod is played by the real runner fed with the files the Secret holds."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bot.config.settings import Settings
from bot.executors.kube_status import Graces
from bot.executors.kubernetes import KubernetesExecutor
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.fakes.kubeapi import KubeAPI
from tests.flow.harness import REPO, Flow, until
from tests.sandbox.support import runner_env

pytestmark = pytest.mark.slow

SANDBOX_IMAGE = "ghcr.io/agentbot/agentbot-sandbox:0.1.0"


async def play_pod(kube_api: KubeAPI, job: str, tmp: Path) -> int:
    """Run what the Job's container would: `python -m sandbox` on the Secret's files."""
    values = kube_api.secret_values(job)
    spec_dir = tmp / "spec"
    spec_dir.mkdir(parents=True)
    for name, value in values.items():
        (spec_dir / name).write_text(value)
    kube_api.set_pod_running(job)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", cwd=tmp, env=runner_env(tmp),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _out, err = await asyncio.wait_for(process.communicate(), 120)
    code = process.returncode
    assert code is not None
    message = (tmp / "termination-log").read_text() if (tmp / "termination-log").exists() \
        else ""
    kube_api.set_pod_terminated(job, code, message)
    kube_api.set_job_condition(job, "Complete" if code == 0 else "Failed",
                               None if code == 0 else "BackoffLimitExceeded")
    assert code == 0, err.decode()[-2000:]
    return code


async def test_label_to_pull_request_through_a_kubernetes_job(
        fake_github: FakeGitHub, kube_api: KubeAPI, tmp_path: Path,
        make_settings: Callable[..., Settings]) -> None:
    flow = await Flow.create(fake_github, tmp_path, make_settings,
                             f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}",
                             executor="kubernetes", namespace=kube_api.namespace,
                             sandbox_image=SANDBOX_IMAGE)
    api_clients: list[Any] = []

    def executor() -> KubernetesExecutor:
        api_clients.append(client.ApiClient(kube_api.configuration()))
        return KubernetesExecutor.from_settings(
            flow.settings, api_client=api_clients[-1], backoff_base=0.01, backoff_max=0.05,
            graces=Graces(pod_create=30, pod_start=30, unschedulable=30))

    flow.make_executor = executor
    await flow.start()
    try:
        flow.plan(write={"greeting.txt": "hi\n"}, summary="Greets now.")
        await flow.deliver("issues", p.issues_labeled())
        run = await flow.wait_for_run()
        job = f"agentbot-run-{run.id}"

        async def job_made() -> bool:
            return bool(kube_api.pods_of(job)) and kube_api.exists("secrets", job)

        await until(job_made, what="the Job, its pod and its Secret")
        spec = json.loads(kube_api.secret_values(job)["spec.json"])
        # The pod fetches through the gateway (here in the bot's process, as a Deployment
        # would serve it in a cluster) and holds no GitHub token.
        assert spec["clone_url"] == f"{flow.settings.sandbox_gateway_url}/git/{REPO}.git"
        assert set(kube_api.secret_values(job)) == {"spec.json", "gateway-token",
                                                    "callback-token"}
        assert spec["base_sha"] == flow.branches()["main"]
        await play_pod(kube_api, job, tmp_path / "pod")
        run = await flow.settled(run.id)
        assert (run.state, run.error) == ("succeeded", None)
        [pull] = flow.pulls()
        assert pull.number == run.pr_number and pull.pull.draft
        assert flow.files(run.branch)["greeting.txt"] == b"hi\n"
        [check] = flow.check_runs()
        assert check.conclusion == "success"
        assert len(flow.status_comments()) == 1
        [token] = [t for t in fake_github.state.tokens.values() if t.repository_ids]

        async def revoked() -> bool:
            return token.revoked

        await until(revoked, what="the gateway revoking the clone's token")

        # The Secret goes with the sandbox's end; the Job stays for its TTL, for inspection.
        async def secret_gone() -> bool:
            return not kube_api.exists("secrets", job)

        await until(secret_gone, what="the Secret's removal")
        assert kube_api.exists("jobs", job)
    finally:
        await flow.close()
        for api_client in api_clients:
            api_client.close()
