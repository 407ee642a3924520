"""The local executor with the real runner: start to status, cancel, deadline and adoption."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.executors.base import RunSpec, SandboxPhase, SandboxSecrets, SandboxStatus
from bot.executors.local import LocalExecutor, bwrap_argv, default_env
from sandbox import sessions
from tests.sandbox.support import (
    CALLBACK_TOKEN,
    GATEWAY_TOKEN,
    ROOT,
    RUN_ID,
    Site,
    make_site,
    make_spec,
)

SECRETS = SandboxSecrets(GATEWAY_TOKEN, CALLBACK_TOKEN)
BWRAP = shutil.which("bwrap") or os.environ.get("AGENTBOT_TEST_BWRAP")


@pytest.fixture
async def site(tmp_path: Path, aiohttp_server: Any) -> Site:
    return await make_site(tmp_path, aiohttp_server)


class Harness:
    """Builds executors on one state directory and closes them all at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state_dir = tmp / "state"
        self.run_root = tmp / "runs"
        self.report = tmp / "agent-report.json"
        self.go = tmp / "go"
        self.executors: list[LocalExecutor] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "LANG": "C.UTF-8",
                "SCRIPTED_AGENT_REPORT": str(self.report), "SCRIPTED_AGENT_GO": str(self.go),
                **extra}

    def executor(self, **options: Any) -> LocalExecutor:
        options.setdefault("env", self.env())
        options.setdefault("bwrap", False)
        executor = LocalExecutor(state_dir=self.state_dir, run_root=self.run_root,
                                 kill_grace_seconds=2.0, **options)
        self.executors.append(executor)
        return executor

    async def wait_for_report(self, key: str = "pid") -> dict[str, Any]:
        for _ in range(400):
            data = await asyncio.to_thread(_read_json, self.report)
            if data and key in data:
                return data
            await asyncio.sleep(0.05)
        raise AssertionError(f"the agent never reported {key}")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    for executor in harness.executors:
        await executor.close()


async def next_status(stream: AsyncIterator[SandboxStatus], limit: float = 30) -> SandboxStatus:
    return await asyncio.wait_for(anext(stream), limit)


def fake_python(path: Path, body: str) -> str:
    """A stand-in for the interpreter, to drive the executor without the runner."""
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def leftovers(harness: Harness) -> list[str]:
    """Files the executor left behind: run records and run directories."""
    return sorted(p.name for root in (harness.state_dir, harness.run_root) if root.exists()
                  for p in root.iterdir())


async def test_a_run_goes_from_start_to_succeeded_with_the_result_stored(
        site: Site, harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.executors.local"):
        executor = harness.executor()
    assert "does not isolate" in caplog.text
    statuses = executor.statuses()

    await executor.start(site.spec(), SECRETS)

    assert await next_status(statuses) == SandboxStatus(RUN_ID, SandboxPhase.RUNNING)
    assert await next_status(statuses) == SandboxStatus(RUN_ID, SandboxPhase.SUCCEEDED,
                                                        exit_code=0)
    [result] = site.bot.results
    assert result["status"] == "succeeded" and len(result["changes"]) == 8
    assert leftovers(harness) == []  # record, run directory and token files are gone


async def test_a_failed_run_reports_the_exit_code_and_the_runners_reason(
        site: Site, harness: Harness) -> None:
    executor = harness.executor()
    statuses = executor.statuses()
    await executor.start(site.spec(setup=["exit 5"]), SECRETS)
    await next_status(statuses)

    status = await next_status(statuses)

    assert (status.phase, status.exit_code) == (SandboxPhase.FAILED, 12)
    assert status.reason == ("exit code 12 (setup failed): setup failed: Setup command 1 "
                             "(`exit 5`) exited with code 5.")
    assert site.bot.results[0]["status"] == "failed"


async def test_the_sandbox_sees_its_files_but_not_the_bots_secrets(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "whsec-bot-only")
    monkeypatch.setenv("GITHUB_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-for-agents")
    out = harness.tmp / "seen"
    python = fake_python(harness.tmp / "python", f'stat -c "%a %n" "$AGENTBOT_SPEC_DIR"/* > '
                         f'"{out}.modes"; env > "{out}.env"; echo "$@" > "{out}.args"')
    executor = harness.executor(python=python, env=default_env())
    statuses = executor.statuses()
    spec = plain_spec(31)

    await executor.start(spec, SECRETS)
    await next_status(statuses)
    assert (await next_status(statuses)).phase == SandboxPhase.SUCCEEDED

    modes = dict(line.split(" ", 1)[::-1] for line in out.with_suffix(".modes").read_text()
                 .splitlines())
    assert sorted(Path(p).name for p in modes) == ["callback-token", "gateway-token",
                                                   "spec.json"]
    assert set(modes.values()) == {"600"}
    env = out.with_suffix(".env").read_text()
    assert "whsec-bot-only" not in env and "PRIVATE KEY" not in env
    # The model key stays with the gateway: the sandbox gets none of the bot's.
    assert "sk-ant-for-agents" not in env
    assert f"PYTHONPATH={ROOT}" in env
    assert out.with_suffix(".args").read_text().strip() == "-m sandbox"


def plain_spec(run_id: int) -> RunSpec:
    """A spec for a stand-in interpreter: nothing behind its URLs is ever called."""
    return dataclasses.replace(
        make_spec(clone_url="http://127.0.0.1:9/demo.git", base_sha="c" * 40, timeout=2,
                  callback_url=f"http://127.0.0.1:9/internal/runs/{run_id}"), run_id=run_id)


async def test_cancel_kills_the_whole_process_group(site: Site, harness: Harness) -> None:
    executor = harness.executor()
    statuses = executor.statuses()
    await executor.start(site.spec(prompt="mode: sleep"), SECRETS)
    await next_status(statuses)
    report = await harness.wait_for_report("child_pid")

    await executor.cancel(RUN_ID)

    assert await next_status(statuses) == SandboxStatus(RUN_ID, SandboxPhase.GONE,
                                                        "the sandbox was cancelled")
    assert not _alive(report["pid"]) and not _alive(report["child_pid"])
    assert leftovers(harness) == []
    await executor.cancel(RUN_ID)  # a second cancel finds nothing to do


def _alive(pid: int) -> bool:
    fields = sessions.stat_fields(pid)
    return fields is not None and fields[0] != "Z"


async def test_the_executors_own_deadline_times_a_hung_sandbox_out(harness: Harness) -> None:
    python = fake_python(harness.tmp / "python", "exec sleep 60")
    executor = harness.executor(python=python, deadline_grace_seconds=0.2)
    statuses = executor.statuses()
    spec = plain_spec(32)
    await executor.start(spec, SECRETS)
    await next_status(statuses)

    status = await next_status(statuses, limit=15)

    assert status.phase == SandboxPhase.TIMED_OUT
    assert status.reason == "DeadlineExceeded: the sandbox ran past its 2s limit"
    assert leftovers(harness) == []


async def test_start_twice_starts_one_sandbox(site: Site, harness: Harness) -> None:
    executor = harness.executor()
    statuses = executor.statuses()
    await executor.start(site.spec(prompt="mode: noop"), SECRETS)
    await executor.start(site.spec(prompt="mode: noop"), SECRETS)

    assert (await next_status(statuses)).phase == SandboxPhase.RUNNING
    assert (await next_status(statuses)).phase == SandboxPhase.SUCCEEDED
    assert len(site.bot.results) == 1


async def test_a_new_executor_adopts_a_running_sandbox_after_a_restart(
        site: Site, harness: Harness) -> None:
    first = harness.executor()
    await first.start(site.spec(prompt="mode: wait"), SECRETS)
    await harness.wait_for_report()
    await first.close()  # the bot goes away; the sandbox keeps running

    second = harness.executor()
    statuses = second.statuses()
    adopted = await second.reconcile({RUN_ID, 99})

    assert adopted == [SandboxStatus(RUN_ID, SandboxPhase.RUNNING),
                       SandboxStatus(99, SandboxPhase.GONE,
                                     "no local sandbox process exists for this run")]
    await asyncio.to_thread(harness.go.touch)
    assert await next_status(statuses) == SandboxStatus(RUN_ID, SandboxPhase.SUCCEEDED,
                                                        exit_code=0)
    assert site.bot.results[0]["status"] == "succeeded"
    assert leftovers(harness) == []


async def test_reconcile_reports_how_a_sandbox_ended_while_the_bot_was_away(
        harness: Harness) -> None:
    python = fake_python(harness.tmp / "python", "sleep 0.3; exit 13")
    first = harness.executor(python=python)
    await first.start(plain_spec(33), SECRETS)
    await first.close()
    record = json.loads((harness.state_dir / "run-33.json").read_text())
    await asyncio.to_thread(wait_until_gone, record["pid"], record["start_ticks"])

    second = harness.executor()
    [status] = await second.reconcile({33})

    assert (status.phase, status.exit_code) == (SandboxPhase.FAILED, 13)
    assert status.reason == "exit code 13 (agent failed)"
    assert leftovers(harness) == []


async def test_reconcile_stops_sandboxes_of_runs_no_longer_active(
        site: Site, harness: Harness) -> None:
    first = harness.executor()
    await first.start(site.spec(prompt="mode: sleep"), SECRETS)
    report = await harness.wait_for_report("child_pid")
    await first.close()

    assert await harness.executor().reconcile(set()) == []

    assert not _alive(report["pid"]) and not _alive(report["child_pid"])
    assert leftovers(harness) == []


def wait_until_gone(pid: int, ticks: int) -> None:
    for _ in range(200):
        if not sessions.alive(pid, ticks):
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} is still running")


def test_bwrap_binds_only_the_run_directory_writable(tmp_path: Path) -> None:
    argv = bwrap_argv("/usr/bin/bwrap", tmp_path)

    assert argv[:5] == ["/usr/bin/bwrap", "--ro-bind", "/", "/", "--dev"]
    writable = [argv[i + 1] for i, arg in enumerate(argv) if arg in ("--bind", "--tmpfs")]
    assert writable == ["/tmp", str(tmp_path)]
    assert "--unshare-net" not in argv and argv[-1] == "--"


@pytest.mark.skipif(not BWRAP, reason="bubblewrap is not installed")
async def test_under_bwrap_the_host_filesystem_is_read_only(site: Site, harness: Harness) -> None:
    probe = ROOT / "tests" / "data" / "sandbox" / ".bwrap-probe"
    env = harness.env(SCRIPTED_AGENT_REPORT="../agent-report.json",
                      SCRIPTED_AGENT_PROBE=str(probe))
    executor = harness.executor(bwrap=BWRAP, env=env, keep_run_dirs=True)
    statuses = executor.statuses()
    await executor.start(site.spec(), SECRETS)
    await next_status(statuses)

    assert await next_status(statuses) == SandboxStatus(RUN_ID, SandboxPhase.SUCCEEDED,
                                                        exit_code=0)
    [run_dir] = harness.run_root.iterdir()
    report = json.loads((run_dir / "agent-report.json").read_text())
    assert report["probe"] == "refused: Read-only file system"
    assert not probe.exists()
    assert len(site.bot.results[0]["changes"]) == 8
    assert not (run_dir / "spec").exists()  # the token files go even when the run dir stays


def test_the_default_environment_is_the_basics_and_no_credential() -> None:
    env = default_env({"PATH": "/bin", "LANG": "C.UTF-8", "OPENAI_API_KEY": "sk",
                       "ANTHROPIC_BASE_URL": "https://elsewhere", "GEMINI_API_KEY": "g",
                       "GITHUB_PRIVATE_KEY": "pem", "GITHUB_WEBHOOK_SECRET": "s",
                       "AGENTBOT_DATABASE_URL": "sqlite://", "HTTPS_PROXY": "http://corp:3128",
                       "HOME": "/root", "PYTHONPATH": "/x"})

    # Model keys stay with the gateway, and the gateway is the sandbox's only proxy.
    assert env == {"PATH": "/bin", "LANG": "C.UTF-8"}
    assert stat.S_IMODE(0o600) == 0o600 and sys.executable
