"""Fixtures for the real-CLI tests: one scratch directory and one account per session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clis.support import CliWorld, expose, installed_cli, python_for, unprivileged_account


@pytest.fixture(scope="session")
def cli_scratch() -> Iterator[Path]:
    """A directory outside pytest's (root-only) tmp tree, open to the agent's account."""
    scratch = Path(tempfile.mkdtemp(prefix="agentbot-clis-"))
    scratch.chmod(0o755)
    yield scratch
    shutil.rmtree(scratch, ignore_errors=True)


def cli_world(name: str, scratch: Path) -> CliWorld:
    """The pinned CLI `name`, reachable by an unprivileged account (skipped, saying why,
    where it is not installed or there is no such account)."""
    executable, why = installed_cli(name)
    if executable is None:
        pytest.skip(why)
    account, why = unprivileged_account()
    if account is None:
        pytest.skip(why)
    python = python_for(account)
    if python is None:
        pytest.skip(f"no Python 3.11 that the user {account.name} can run")
    bin_dir = expose(executable, account, scratch)
    # aider's virtualenv names the Python it was made from, which may be out of reach.
    venv_python = bin_dir.parent / "venv" / "bin" / "python"
    if name == "aider" and not account.can_run([str(venv_python), "-c", ""]):
        pytest.skip(f"aider's virtualenv in {executable.parent.parent} names a Python the user "
                    f"{account.name} cannot run: reinstall it with AIDER_PYTHON set to one "
                    "it can")
    return CliWorld(account, python, bin_dir, scratch)


@pytest.fixture(scope="session")
def claude_world(cli_scratch: Path) -> CliWorld:
    """The pinned Claude Code, run as an unprivileged account (it refuses root)."""
    return cli_world("claude", cli_scratch)


@pytest.fixture(scope="session")
def codex_world(cli_scratch: Path) -> CliWorld:
    """The pinned Codex, run as an unprivileged account as the image runs it."""
    return cli_world("codex", cli_scratch)


@pytest.fixture(scope="session")
def opencode_world(cli_scratch: Path) -> CliWorld:
    """The pinned OpenCode, run as an unprivileged account as the image runs it."""
    return cli_world("opencode", cli_scratch)


@pytest.fixture(scope="session")
def aider_world(cli_scratch: Path) -> CliWorld:
    """The pinned aider, run as an unprivileged account as the image runs it."""
    return cli_world("aider", cli_scratch)
