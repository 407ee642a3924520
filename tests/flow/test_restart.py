"""A bot that restarts mid-run: the new process adopts the sandbox and the same run completes."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import unused_port
from kubernetes import client
from sqlalchemy import select

from bot.app import BOT_KEY, create_app, gateway_app, internal_app
from bot.config.settings import Settings
from bot.executors.kube_status import Graces
from bot.executors.kubernetes import API_PERMISSIONS, KubernetesExecutor
from bot.executors.local import LocalExecutor
from bot.gateway import credentials
from bot.gateway.credentials import gateway_key
from bot.runs.ledger import get_run
from bot.store.tables import run_events, run_transitions
from tests.fakes.github import FakeGitHub
from tests.fakes.kubeapi import KubeAPI
from tests.runs.test_callbacks import queue_run
from tests.runs.test_scheduler import GitHubGit

# The scripted agent: counts its starts, says it is working, waits for the test's word, edits.
AGENT = '''\
import os, pathlib, sys, time
prompt_file, starts, go = sys.argv[1:4]
with open(starts, "a") as handle:
    handle.write(f"{os.getpid()}\\n")
print("working on it", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
pathlib.Path("NOTES.md").write_text("written across a restart\\n")
'''
FINAL = ("succeeded", "failed", "cancelled", "timed_out")


class Served:
    """One `agentbot serve` process, built as the CLI builds it: the public app, the gateway
    (with the local executor), then the internal app (which launches the scheduler), each
    behind its own runner on loopback."""

    def __init__(self, settings: Settings, executor: Any) -> None:
        self.public = create_app(settings, executor=executor)
        self.runners: list[web.AppRunner] = []
        self.settings = settings

    async def start(self) -> Served:
        apps = [(self.public, self.settings.port)]
        if self.settings.executor_name == "local":
            apps.append((gateway_app(self.public), self.settings.gateway_port))
        apps.append((internal_app(self.public), self.settings.internal_port))
        for app, port in apps:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            self.runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", port).start()
        return self

    @property
    def bot(self) -> Any:
        return self.public[BOT_KEY]

    async def stop(self) -> None:
        """What `serve` does on SIGTERM: the internal runner first, then the public one."""
        for runner in reversed(self.runners):
            await runner.cleanup()
        self.runners.clear()


@pytest.fixture
async def servers() -> AsyncIterator[list[Served]]:
    made: list[Served] = []
    yield made
    for served in made:
        await served.stop()


async def until(check: Callable[[], Any], seconds: float = 30.0) -> None:
    """Poll `check` (sync or async) until it is true: the work happens in other processes."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, "the condition never became true"
        await asyncio.sleep(0.02)


async def history(served: Served, run_id: int) -> tuple[list[str], list[str]]:
    """The run's transitions and its stored event kinds, oldest first."""
    async with served.bot.engine.connect() as conn:
        moves = (await conn.execute(select(run_transitions.c.to_state).where(
            run_transitions.c.run_id == run_id).order_by(run_transitions.c.id))).scalars().all()
        kinds = (await conn.execute(select(run_events.c.kind).where(
            run_events.c.run_id == run_id).order_by(run_events.c.seq))).scalars().all()
    return list(moves), list(kinds)


def settings_for(make_settings: Callable[..., Settings], fake: FakeGitHub, database_url: str,
                 **overrides: Any) -> Settings:
    """One configuration for both processes: same database, same ports, same App key."""
    return make_settings(database_url=database_url, github_api_url=fake.url,
                         github_app_id=fake.app_id, github_private_key=fake.private_key_pem,
                         host="127.0.0.1", port=unused_port(), internal_port=unused_port(),
                         **overrides)


def scoped_tokens(fake: FakeGitHub) -> list[Any]:
    """Tokens minted for sandboxes (limited to repositories), as the fake issued them."""
    return [t for t in fake.state.tokens.values() if t.repository_ids is not None]


@pytest.mark.slow
async def test_the_local_executor_adopts_the_sandbox_and_the_run_completes(
        fake_github: FakeGitHub, aiohttp_server: Any, database_url: str,
        make_settings: Callable[..., Settings], tmp_path: Path,
        servers: list[Served]) -> None:
    fake_github.add_installation(7, "octo-org")
    fake_github.add_repo("octo-org", "demo", repo_id=100,
                         files={"README.md": b"# demo\n", "src/app.py": b"print(1)\n"})
    git = GitHubGit(fake_github)
    git_server = await aiohttp_server(git.app())
    (agent := tmp_path / "agent.py").write_text(AGENT)
    starts, go = tmp_path / "agent-starts", tmp_path / "go"
    settings = settings_for(make_settings, fake_github, database_url,
                            agent_command=f"{sys.executable} {agent} {{prompt_file}} "
                                          f"{starts} {go}")

    def executor() -> LocalExecutor:
        # Both processes share the state directory, as a restarted bot on one machine does.
        return LocalExecutor(state_dir=tmp_path / "state", run_root=tmp_path / "runs",
                             env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}, bwrap=False)

    first = await Served(settings, executor()).start()
    servers.append(first)
    run_id = await queue_run(first.bot.engine, installation_id=7, repo_id=100, number=3,
                             repo_full_name="octo-org/demo", agent="command",
                             clone_url=str(git_server.make_url("/octo-org/demo.git")))
    first.bot.scheduler.notify()
    await until(lambda: starts.exists())
    await until(lambda: _state_is(first, run_id, "running"))
    [record] = (tmp_path / "state").iterdir()
    [sandbox_token] = scoped_tokens(fake_github)
    # The checkout is over (the agent runs in it): the gateway fetched with the token it
    # minted for the run.
    assert {auth for _m, _p, auth in git.requests} == {True}

    await first.stop()  # the bot goes away mid-run; the agent keeps waiting

    assert record.exists(), "the sandbox's record must outlive the bot"
    second = await Served(settings, executor()).start()
    servers.append(second)
    assert (await get_run(second.bot.engine, run_id)).state == "running"
    await asyncio.to_thread(go.touch)
    await until(lambda: _state_is(second, run_id, *FINAL), seconds=60)

    run = await get_run(second.bot.engine, run_id)
    assert (run.state, run.error) == ("succeeded", None), run.error
    assert run.result["status"] == "succeeded"
    changes = {c["path"]: c for c in run.result["changes"]}
    assert base64.b64decode(changes["NOTES.md"]["content_b64"]) == b"written across a restart\n"
    # Adopted, not started again: one agent start, one clone, one set of transitions.
    assert len(starts.read_text().splitlines()) == 1
    assert [p for m, p, _a in git.requests if m == "POST"] == ["/octo-org/demo.git/git-upload-pack"]
    moves, kinds = await history(second, run_id)
    assert moves == ["queued", "starting", "running", "succeeded"]
    assert kinds.count("phase") >= 4 and "log" in kinds  # events of both processes kept
    # The first process's gateway revoked the clone's token as it stopped (the sandbox never
    # held it; a fetch after the restart would have got a new one), and nobody minted another.
    assert scoped_tokens(fake_github) == [sandbox_token]
    assert sandbox_token.revoked
    assert sandbox_token.repository_ids == frozenset({100})
    assert sandbox_token.permissions == {"metadata": "read", "contents": "read"}
    assert not record.exists() and not list((tmp_path / "runs").iterdir())
    assert second.bot.scheduler.health() is None


async def _state_is(served: Served, run_id: int, *states: str) -> bool:
    return (await get_run(served.bot.engine, run_id)).state in states


SANDBOX_IMAGE = "ghcr.io/agentbot/agentbot-sandbox:0.1.0"
RESULT = {"status": "succeeded", "summary": "Wrote the notes.", "commit_message": "Add notes",
          "changes": [{"path": "NOTES.md", "mode": "100644",
                       "content_b64": base64.b64encode(b"notes\n").decode()}], "stats": {}}


class Sandbox:
    """What the sandbox in the Job does with the bot: upload its result with its run's token,
    read from the run's Secret as the pod mounts it."""

    def __init__(self, kube_api: KubeAPI, settings: Settings, run_id: int) -> None:
        values = kube_api.secret_values(f"agentbot-run-{run_id}")
        self.gateway_token, self.callback_token = values["gateway-token"], values["callback-token"]
        self.url = f"http://127.0.0.1:{settings.internal_port}/internal/runs/{run_id}/result"

    async def upload(self) -> int:
        async with ClientSession() as session, session.put(
                self.url, json=RESULT,
                headers={"Authorization": f"Bearer {self.callback_token}"}) as response:
            return response.status


@pytest.mark.parametrize("ends", ["after the restart", "while the bot is away"])
async def test_the_kubernetes_executor_adopts_the_job_and_the_run_completes(
        ends: str, fake_github: FakeGitHub, kube_api: KubeAPI, database_url: str,
        make_settings: Callable[..., Settings], servers: list[Served]) -> None:
    fake_github.add_installation(7, "octo-org")
    fake_github.add_repo("octo-org", "demo", repo_id=100)
    settings = settings_for(make_settings, fake_github, database_url, executor="kubernetes",
                            namespace=kube_api.namespace, sandbox_image=SANDBOX_IMAGE)
    api_clients: list[client.ApiClient] = []

    def executor() -> KubernetesExecutor:
        api_clients.append(client.ApiClient(kube_api.configuration()))
        return KubernetesExecutor.from_settings(
            settings, api_client=api_clients[-1], backoff_base=0.01, backoff_max=0.05,
            graces=Graces(pod_create=30, pod_start=30, unschedulable=30))

    try:
        first = await Served(settings, executor()).start()
        servers.append(first)
        run_id = await queue_run(first.bot.engine, installation_id=7, repo_id=100, number=3,
                                 repo_full_name="octo-org/demo", agent="command")
        first.bot.scheduler.notify()
        job = f"agentbot-run-{run_id}"
        await until(lambda: kube_api.pods_of(job) and kube_api.exists("secrets", job))
        kube_api.set_pod_running(job)
        await until(lambda: _state_is(first, run_id, "running"))
        sandbox = Sandbox(kube_api, settings, run_id)
        key = gateway_key(settings.private_key_pem() or "")
        assert sandbox.gateway_token == credentials.issue(key, run_id)
        if ends == "while the bot is away":
            assert await sandbox.upload() == 200  # stored; the run waits for the Job's end

        await first.stop()

        assert kube_api.open_watches() == 0 and kube_api.exists("jobs", job)
        since = len(kube_api.requests)
        if ends == "while the bot is away":
            kube_api.set_pod_terminated(job, 0)
            kube_api.set_job_condition(job, "Complete")
        second = await Served(settings, executor()).start()
        servers.append(second)
        if ends == "after the restart":
            assert (await get_run(second.bot.engine, run_id)).state == "running"
            await until(lambda: second.bot.executor.watching)
            # The callback token is derived from the App's key, not held in memory: the new
            # process takes the upload of a sandbox the old one started.
            assert await sandbox.upload() == 200
            kube_api.set_pod_terminated(job, 0)
            kube_api.set_job_condition(job, "Complete")
        await until(lambda: _state_is(second, run_id, *FINAL))

        run = await get_run(second.bot.engine, run_id)
        assert (run.state, run.error, run.result) == ("succeeded", None, RESULT)
        moves, _kinds = await history(second, run_id)
        assert moves == ["queued", "starting", "running", "succeeded"]
        # Adopted, not started again: one Job and one Secret were ever created.
        assert [plural for plural, _body in kube_api.received] == ["jobs", "secrets"]
        # The new process found it by listing and then watching, never by reading the Job.
        after = [(method, path.rsplit("/", 1)[-1], query.get("watch") == "true")
                 for method, path, query in kube_api.requests[since:]]
        assert ("GET", job, False) not in after and ("POST", "jobs", False) not in after
        assert after[:2] == [("GET", "jobs", False), ("GET", "pods", False)]  # the reconcile
        assert ("GET", "jobs", True) in after
        watches = [query for _m, path, query in kube_api.requests[since:]
                   if path.endswith("/jobs") and query.get("watch") == "true"]
        assert all(int(w["resourceVersion"]) > 0 for w in watches)
        # The bot minted no GitHub token for the sandbox (the gateway mints at a fetch), and the
        # new process needed none to take over: the credentials derive from the App's key.
        assert scoped_tokens(fake_github) == []
        # The new process removes the ended sandbox's Secret; the Job stays for its TTL.
        await until(lambda: not kube_api.exists("secrets", job))
        assert kube_api.exists("jobs", job)
        assert kube_api.rbac_calls() <= {(group, resource, verb) for (group, resource), verbs
                                         in API_PERMISSIONS.items() for verb in verbs}
        assert second.bot.scheduler.health() is None
    finally:
        for served in servers:
            await served.stop()
        for api in api_clients:
            api.close()
