"""The kind end-to-end driver's parts that run without a cluster: git server, webhook, values."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from jsonschema import Draft202012Validator

from sandbox.checkout import CheckoutError, checkout
from tests.e2e import run as driver
from tests.e2e.gitserver import GitServer
from tests.e2e.scenario import (
    AGENT_COMMAND,
    ISSUE_TITLE,
    ROOT,
    VALUES,
    Scenario,
    chart_values,
    image_values,
    labeled_payload,
    seed,
)
from tests.fakes.github_state import IssuedToken

SCHEMAS = ROOT / "tests" / "fakes" / "schemas"


def _token(fake: Any, setup: Scenario, **changes: Any) -> str:
    """Mint, directly in the fake's state, the token the bot would give a sandbox."""
    fields: dict[str, Any] = {
        "token": f"ghs_e2e{len(fake.state.tokens):032d}",
        "installation_id": setup.installation.id,
        "repository_ids": frozenset({setup.repo.id}),
        "permissions": {"metadata": "read", "contents": "read"},
        "expires_at": time.time() + 3600,
    }
    fields.update(changes)
    issued = IssuedToken(**fields)
    fake.state.tokens[issued.token] = issued
    return issued.token


async def _git_server(aiohttp_server: Any, fake: Any) -> tuple[GitServer, str]:
    server = GitServer(fake)
    running = await aiohttp_server(server.app())
    return server, str(running.make_url("")).rstrip("/")


async def _checkout(tmp_path: Path, clone_url: str, setup: Scenario, token: str) -> Path:
    workspace = tmp_path / f"workspace-{token[-6:]}"
    base_sha = setup.repo.git.resolve(setup.repo.default_branch)
    assert base_sha is not None
    # The sandbox's own checkout, in a thread: it blocks, and the server shares this loop.
    await asyncio.to_thread(
        checkout, workspace=workspace, clone_url=clone_url, base_sha=base_sha,
        base_ref=setup.repo.default_branch, branch="agentbot/e2e", token=token,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        deadline=time.monotonic() + 60, on_line=lambda stream, line: None,
    )
    return workspace


async def test_sandbox_checkout_clones_with_its_scoped_token(
        aiohttp_server: Any, fake_github: Any, tmp_path: Path) -> None:
    setup = seed(fake_github)
    server, base = await _git_server(aiohttp_server, fake_github)
    token = _token(fake_github, setup)
    workspace = await _checkout(tmp_path, f"{base}/{setup.repo.full_name}.git", setup, token)
    assert (workspace / "README.md").read_text().startswith("# kind-e2e")
    assert [t.token for t in server.used_tokens] and {
        t.token for t in server.used_tokens} == {token}


@pytest.mark.parametrize("scope", ["no token", "other repository", "no contents", "expired"])
async def test_git_server_refuses_tokens_outside_the_repository(
        aiohttp_server: Any, fake_github: Any, tmp_path: Path, scope: str) -> None:
    setup = seed(fake_github)
    _, base = await _git_server(aiohttp_server, fake_github)
    token = {
        "no token": "",
        "other repository": _token(fake_github, setup, repository_ids=frozenset({1})),
        "no contents": _token(fake_github, setup, permissions={"metadata": "read"}),
        "expired": _token(fake_github, setup, expires_at=time.time() - 1),
    }[scope]
    with pytest.raises(CheckoutError):
        await _checkout(tmp_path, f"{base}/{setup.repo.full_name}.git", setup, token)


async def test_git_server_never_accepts_a_push(aiohttp_client: Any, fake_github: Any) -> None:
    setup = seed(fake_github)
    client = await aiohttp_client(GitServer(fake_github).app())
    reply = await client.get(f"/{setup.repo.full_name}.git/info/refs",
                             params={"service": "git-receive-pack"})
    assert reply.status == 403


def test_git_server_serves_what_real_git_reads(fake_github: Any) -> None:
    setup = seed(fake_github)
    assert setup.repo.git.path is not None
    out = subprocess.run(["git", "--git-dir", str(setup.repo.git.path), "log", "--oneline"],
                         capture_output=True, text=True, check=True).stdout
    assert "Initial commit" in out


def test_webhook_payload_is_a_valid_issues_labeled(fake_github: Any) -> None:
    setup = seed(fake_github)
    data = labeled_payload(fake_github, setup, "http://172.18.0.1:9/octo-org/kind-e2e.git")
    document = json.loads((SCHEMAS / "webhooks.json").read_text())
    validator = Draft202012Validator({"allOf": [document["webhooks"]["issues.labeled"]],
                                      "components": document["components"]})
    assert [e.message[:200] for e in validator.iter_errors(data)] == []
    assert data["repository"]["clone_url"].endswith("/octo-org/kind-e2e.git")
    assert data["installation"]["id"] == setup.installation.id
    assert (data["issue"]["number"], data["issue"]["title"]) == (setup.issue.number, ISSUE_TITLE)
    assert data["label"]["name"] == "agent"


def test_chart_renders_with_the_e2e_values() -> None:
    values = yaml.safe_load(VALUES.read_text())
    overrides = chart_values(bot_image="agentbot:e2e", sandbox_image="agentbot-sandbox:e2e",
                             host="172.18.0.1", api_port=40001,
                             secret_name="agentbot-github")
    merged = helm.Chart.load(ROOT / "charts" / "agentbot")
    try:
        files = merged.render(_deep_merge(values, overrides), name="agentbot",
                              namespace=driver.NAMESPACE)
    finally:
        merged.close()
    objects = [d for path, text in files.items() if path.endswith(".yaml")
               for d in yaml.safe_load_all(text) if d]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == "agentbot:e2e" and container["imagePullPolicy"] == "Never"
    assert env["AGENTBOT_SANDBOX_IMAGE"] == "agentbot-sandbox:e2e"
    assert env["GITHUB_API_URL"] == "http://172.18.0.1:40001"
    assert env["AGENTBOT_DEFAULT_AGENT"] == "command"
    assert env["AGENTBOT_AGENT_COMMAND"] == AGENT_COMMAND
    assert "AGENTBOT_RUNTIME_CLASS" not in env  # kind nodes have no gVisor
    policy = next(o for o in objects if o["metadata"]["name"] == "agentbot-sandbox")
    # Not the fake GitHub's address: sandboxes reach the gateway, and the gateway the fake.
    assert "ipBlock" not in str(policy["spec"]["egress"])
    gateway_rule = policy["spec"]["egress"][2]
    assert [p["port"] for p in gateway_rule["ports"]] == [8082, 8083]


def test_image_values_split_name_and_tag() -> None:
    assert image_values("agentbot:e2e") == {"repository": "agentbot", "tag": "e2e"}
    assert image_values("localhost:5000/agentbot:1") == {
        "repository": "localhost:5000/agentbot", "tag": "1"}
    with pytest.raises(ValueError, match="name:tag"):
        image_values("localhost:5000/agentbot")


def test_driver_help_runs() -> None:
    with pytest.raises(SystemExit) as exited:
        driver.main(["--help"])
    assert exited.value.code == 0


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
