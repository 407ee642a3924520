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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.executors.base import RunSpec
from tests.sandbox.support import ROOT, RunnerOutcome, runner_env, write_spec_dir

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
