"""The real agent CLIs in tests: their pinned versions, their cached installs, an unprivileged
user to run them as, and `python -m sandbox` started as that user."""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bot.config.settings import Settings
from bot.executors.base import RunSpec
from bot.executors.local import LocalExecutor
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.flow.harness import REPO, Flow, until
from tests.sandbox.support import ROOT, RunnerOutcome, Site, b64, runner_env, write_spec_dir

DOCKERFILE = ROOT / "sandbox" / "Dockerfile"
INSTALL_SCRIPT = ROOT / "scripts" / "install-agent-clis"
AGENT_USER = "agentbot-test"
# Read at import, before the suite's conftest clears AGENTBOT_* from the environment.
CACHE = Path(os.environ.get("AGENTBOT_CLI_CACHE") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agentbot" / "clis")
# name -> (the Dockerfile's ARG with its version, its executable inside the install)
CLIS = {"claude": ("CLAUDE_CODE_VERSION", "node_modules/.bin/claude"),
        "codex": ("CODEX_VERSION", "node_modules/.bin/codex"),
        "opencode": ("OPENCODE_VERSION", "node_modules/.bin/opencode"),
        "aider": ("AIDER_VERSION", "bin/aider")}


def pinned_version(arg: str) -> str:
    """The version `sandbox/Dockerfile` pins in `ARG <arg>=<version>`."""
    found = re.search(rf"^ARG {re.escape(arg)}=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    if not found:
        raise LookupError(f"sandbox/Dockerfile has no ARG {arg}")
    return found.group(1)


def installed_cli(name: str) -> tuple[Path | None, str]:
    """(the executable, "") for an installed CLI at its pinned version, or (None, why not)."""
    arg, executable = CLIS[name]
    version = pinned_version(arg)
    directory = CACHE / f"{name}-{version}"
    path = directory / executable
    if not (directory / ".installed").exists() or not os.access(path, os.X_OK):
        return None, (f"{name} {version} is not installed in {directory}: run "
                      f"scripts/install-agent-clis {name}")
    return path, ""


@dataclass(frozen=True)
class Account:
    """Who the sandbox runs as: uid, gid and whether that means switching users."""

    uid: int
    gid: int
    name: str

    @property
    def switch(self) -> bool:
        return self.uid != os.geteuid()

    def popen_args(self) -> dict[str, Any]:
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def can_run(self, argv: list[str]) -> bool:
        try:
            done = subprocess.run(argv, capture_output=True, timeout=60, check=False,
                                  **self.popen_args())
        except OSError:
            return False  # not even executable for this account
        return done.returncode == 0

    def own(self, path: Path) -> None:
        """Hand a tree to this account (a no-op when no switch is needed)."""
        if not self.switch:
            return
        for parent, dirs, files in os.walk(path):
            os.chown(parent, self.uid, self.gid)
            for name in dirs + files:
                os.lchown(os.path.join(parent, name), self.uid, self.gid)


def unprivileged_account() -> tuple[Account | None, str]:
    """Ourselves when not root; as root, the `agentbot-test` user (created when missing)."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return Account(me.pw_uid, me.pw_gid, me.pw_name), ""
    try:
        entry = pwd.getpwnam(AGENT_USER)
    except KeyError:
        done = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                               "/usr/sbin/nologin", AGENT_USER], capture_output=True, check=False)
        if done.returncode:
            return None, (f"running as root and could not create the user {AGENT_USER}: "
                          f"{done.stderr.decode(errors='replace').strip()}")
        entry = pwd.getpwnam(AGENT_USER)
    return Account(entry.pw_uid, entry.pw_gid, entry.pw_name), ""


def python_for(account: Account) -> str | None:
    """A Python >= 3.11 the account can run (the venv's may live under root's home)."""
    candidates = [sys.executable, getattr(sys, "_base_executable", ""),
                  shutil.which("python3") or "", "/usr/bin/python3", "/usr/local/bin/python3"]
    check = "import sys; sys.exit(sys.version_info < (3, 11))"
    for candidate in dict.fromkeys(c for c in candidates if c):
        if account.can_run([candidate, "-c", check]):
            return candidate
    return None


def expose(path: Path, account: Account, scratch: Path) -> Path:
    """The directory of `path` (an executable in an install), where the account can reach it:
    itself, or a hard-linked (else copied) copy of the install under `scratch`."""
    if account.can_run(["test", "-x", str(path)]):
        return path.parent
    install = next(p for p in path.parents if (p / ".installed").exists())
    copy = scratch / install.name
    if not copy.exists():
        linked = subprocess.run(["cp", "-al", str(install), str(copy)], capture_output=True,
                                check=False)
        if linked.returncode:
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(install, copy, symlinks=True)
        copy.chmod(0o755)
    return (copy / path.relative_to(install)).parent


@dataclass(frozen=True)
class CliWorld:
    """What a test needs to run a real CLI through the sandbox as an unprivileged user."""

    account: Account
    python: str
    bin_dir: Path
    scratch: Path

    def run_dir(self) -> Path:
        """A fresh directory for one run, readable along its whole path by the account."""
        return Path(tempfile.mkdtemp(prefix="run-", dir=self.scratch))

    async def run_sandbox(self, tmp: Path, spec: RunSpec, *, env: dict[str, str] | None = None,
                          limit: float = 120) -> RunnerOutcome:
        """`python -m sandbox` as the account, to its end; what it left behind."""
        write_spec_dir(tmp / "spec", spec)
        path = f"{self.bin_dir}:/usr/local/bin:/usr/bin:/bin"
        full_env = runner_env(tmp, {"PATH": path, "DISABLE_AUTOUPDATER": "1", **(env or {})})
        self.account.own(tmp)
        process = await asyncio.create_subprocess_exec(
            self.python, "-m", "sandbox", cwd=tmp, env=full_env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            **self.account.popen_args())
        try:
            out, err = await asyncio.wait_for(process.communicate(), limit)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        termination = tmp / "termination-log"
        return RunnerOutcome(
            returncode=process.returncode if process.returncode is not None else -1,
            stdout=out.decode(), stderr=err.decode(),
            termination=termination.read_text() if termination.exists() else None,
            report=None)


# What each label-to-PR flow's agent makes of the flow repository (tests/flow/harness.py
# FILES): the README greeted, src/greet.py written, docs/old.md deleted.
FLOW_TREE = {"README.md": b"# hello, world\n", "src/app.py": b"print('hello')\n",
             "src/greet.py": b"print('hi')\n"}


def switch_user_wrapper(world: CliWorld, path: Path) -> str:
    """The local executor's "python": hand the run directory to the account and become it,
    as the image's uid 10001 would be (the executor itself runs as whoever starts the bot)."""
    account = world.account
    path.write_text(
        "#!/bin/sh\n"
        f'chown -R {account.uid}:{account.gid} "$PWD" || exit 70\n'
        f"exec setpriv --reuid={account.uid} --regid={account.gid} --clear-groups "
        f'{world.python} "$@"\n')
    path.chmod(0o755)
    return str(path)


def point_flow_at(flow: Flow, world: CliWorld, tmp_path: Path, agent: str,
                  settings: dict[str, Any], env: dict[str, str] | None = None) -> None:
    """Point the flow at a real CLI (`agent`), run as the unprivileged account by the local
    executor, with the in-process gateway forwarding to the model double that `settings`
    names (its provider's URL and the operator's key); `env` is added to the executor's."""
    flow.settings = flow.settings.model_copy(update={
        "default_agent": agent, "agent_command": None, **settings})
    run_root = world.run_dir()
    run_root.chmod(0o755)  # the executor's run directories go here, one per run
    wrapper = switch_user_wrapper(world, run_root / "python-as-agent")
    flow.make_executor = lambda: LocalExecutor(
        state_dir=tmp_path / "state", run_root=run_root, python=wrapper, bwrap=False,
        kill_grace_seconds=2.0,
        env={"PATH": f"{world.bin_dir}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
             **(env or {})})


@dataclass(frozen=True)
class FlowRun:
    """A flow's run once settled: the flow (closed, its fake GitHub still readable), the run
    and the base branch's commit when the run was asked for."""

    flow: Flow
    run: Any
    base: str


async def run_flow(fake_github: FakeGitHub, tmp_path: Path,
                   make_settings: Callable[..., Settings], point: Callable[[Flow], None], *,
                   comment: str | None = None, plan_shows: str | None = None,
                   held: asyncio.Event | None = None, seconds: float = 90) -> FlowRun:
    """One run through the whole flow: the bot started on SQLite, `point` choosing its CLI,
    the `agent` label on the issue (or `comment` on it), and the run to its reported end.

    With `plan_shows`, progress is reported every 0.2 s (10 s in production), and `held` (the
    turn the model double holds) is let go once that text is in a check run: the plan
    reached GitHub while the agent was still at work."""
    flow = await Flow.create(fake_github, tmp_path, make_settings,
                             f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}")
    point(flow)
    await flow.start()
    if plan_shows is not None:
        flow.bot.reporter._progress_seconds = 0.2
    try:
        base = flow.branches()["main"]
        if comment is None:
            await flow.deliver("issues", p.issues_labeled())
        else:
            await flow.comment(comment)
        run_id = (await flow.wait_for_run()).id
        if plan_shows is not None:
            async def plan_shown() -> bool:
                return any(plan_shows in str(check.output) for check in flow.check_runs())

            await until(plan_shown, 60, what="the plan in the check run")
            if held is not None:
                held.set()
        run = await flow.settled(run_id, seconds)
    finally:
        if held is not None:
            held.set()
        await flow.close()
    return FlowRun(flow, run, base)


def assert_pull_request(done: FlowRun, summary: str, files: dict[str, bytes] = FLOW_TREE
                        ) -> None:
    """The run succeeded with one pull request: its branch holds `files` (and nothing else) in
    one commit on the base, its body the agent's `summary`, and its check run passed."""
    flow, run = done.flow, done.run
    assert (run.state, run.error) == ("succeeded", None), run.error
    assert flow.files(run.branch) == files
    assert flow.fake.repo(REPO).git.read_commit(run.commit_sha)["parents"] == [done.base]
    [pull] = flow.pulls()
    assert pull.number == run.pr_number and summary in pull.body
    [check] = flow.check_runs()
    assert (check.status, check.conclusion) == ("completed", "success")


def assert_failed_with(done: FlowRun, says: str) -> None:
    """The run failed in the CLI's own words (`says`), in the run and in its failed check run,
    and opened no pull request."""
    flow, run = done.flow, done.run
    assert run.state == "failed"
    assert says in run.error
    [check] = flow.check_runs()
    assert check.conclusion == "failure"
    assert says in check.output["summary"] + check.output.get("text", "")
    assert flow.pulls() == []


# The sessions the resume tests keep: AGENTBOT_SESSION_MAX_BYTES's default.
SESSION_LIMIT = 20 * 1024 * 1024


async def run_keeping_session(world: CliWorld, site: Site, agent: str, gateway_url: str,
                              prompt: str, *, resume_session: bool = False,
                              prepare: Callable[[Path], None] | None = None,
                              env: dict[str, str] | None = None) -> RunnerOutcome:
    """One sandbox run of `agent` in a fresh directory (so a fresh home too), keeping its
    session; `prepare` readies the run directory first (a CLI's config in its home)."""
    site.tmp = world.run_dir()
    site.bot.results.clear()
    if prepare is not None:
        prepare(site.tmp)
    spec = replace(site.spec(agent=agent, prompt=prompt, timeout=120),
                   gateway_url=gateway_url, session_max_bytes=SESSION_LIMIT,
                   resume_session=resume_session)
    return await world.run_sandbox(site.tmp, spec, env={"PWD": str(site.tmp), **(env or {})})


# What each CLI's scripted edits (its scenarios' the_edits()) make of the demo repository of
# tests/sandbox/support.py: README.md edited, old.txt deleted, src/new_module.py created.
SCRIPTED_CHANGES = [
    {"path": "README.md", "mode": "100644", "content_b64": b64(b"# Demo\n\nHello, edited.\n")},
    {"path": "old.txt", "deleted": True},
    {"path": "src/new_module.py", "mode": "100644", "content_b64": b64(b"VALUE = 42\n")},
]
