"""The import contract in pyproject.toml holds, and it would catch a part that breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the packages in `tree`, with `tree`'s pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
         "--no-cache", "--config", "pyproject.toml"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def test_every_contract_holds() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and their contract, to break on purpose."""
    for name in ("bot", "sandbox"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


@pytest.mark.parametrize(("module", "line", "contract", "shown"), [
    # report reaching back into commands, as it once did for its clip() helper
    ("bot/report/text.py", "from bot.commands import replies", "flow",
     "bot.report.text -> bot.commands.replies"),
    # the store is the bottom: it imports no part
    ("bot/store/tables.py", "import bot.runs.ledger", "flow",
     "bot.store.tables -> bot.runs.ledger"),
    # the ledger is beneath publish, not beside the scheduler
    ("bot/runs/ledger.py", "from bot.publish import queue", "flow",
     "bot.runs.ledger -> bot.publish.queue"),
    # siblings in one layer stay apart
    ("bot/intake/webhook.py", "import bot.setup.flow", "flow",
     "bot.intake.webhook -> bot.setup.flow"),
    ("sandbox/runner.py", "import bot.redact", "The sandbox never imports the bot",
     "sandbox.runner -> bot.redact"),
    ("bot/publish/policy.py", "import kubernetes", "Only bot.executors.kubernetes imports",
     "bot.publish.policy -> kubernetes"),
])
def test_an_import_against_the_shape_breaks_the_contract(
        tree: Path, module: str, line: str, contract: str, shown: str) -> None:
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = lint_imports(tree)
    assert done.returncode == 1, done.stdout
    assert "2 kept, 1 broken" in done.stdout
    broken = done.stdout.split("Broken contracts", 1)[1]
    assert shown in broken
    if contract == "flow":
        assert "Each part imports only the parts after it" in broken
    else:
        assert contract in broken
