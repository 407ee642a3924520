"""A prompt-injected agent under the local executor with bubblewrap: it looks for credentials
everywhere it can and tries to reach the outside. It finds none but its run's own gateway
credential, reaches nothing but the gateway, and the run still ends in a pull request."""

from __future__ import annotations

import json
import os
import secrets as random_secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot.config.settings import Settings
from bot.executors.local import LocalExecutor
from bot.gateway import credentials
from bot.gateway.credentials import gateway_key
from bot.runs.callbacks import callback_key, run_token
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.flow.harness import Flow

pytestmark = pytest.mark.slow

BWRAP = shutil.which("bwrap")
PROBE = Path(__file__).with_name("probe_agent.py")


@pytest.mark.skipif(not BWRAP, reason="bubblewrap is not installed (.ci/run installs it)")
async def test_an_injected_agent_finds_no_credential_and_reaches_only_the_gateway(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    flow = await Flow.create(fake_github, tmp_path, make_settings,
                             f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}")
    github_port = urlsplit(fake_github.url).port
    # Made here, not written in any file: the agent may read this very repository (a CI's
    # checkout under /tmp is bound into the sandbox), and must not find them anywhere.
    model_key = f"sk-ant-api03-{random_secrets.token_urlsafe(40)}"
    webhook_secret = random_secrets.token_urlsafe(32)
    flow.settings = flow.settings.model_copy(update={
        "agent_command": f"{sys.executable} {PROBE} {github_port}",
        "anthropic_api_key": model_key, "github_webhook_secret": webhook_secret})
    flow.make_executor = lambda: LocalExecutor(
        state_dir=tmp_path / "state", run_root=tmp_path / "runs", bwrap=BWRAP,
        env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}, keep_run_dirs=True,
        kill_grace_seconds=2.0)
    await flow.start()
    try:
        await flow.deliver("issues", p.issues_labeled())
        run = await flow.settled((await flow.wait_for_run()).id)
        assert (run.state, run.error) == ("succeeded", None)
        [pull] = flow.pulls()
        assert flow.files(run.branch)["probed.txt"] == b"probed\n"
        assert pull.number == run.pr_number
        [run_dir] = (tmp_path / "runs").iterdir()
        report = json.loads((run_dir / "probe.json").read_text())
    finally:
        await flow.close()

    # It searched its environment, the files it can read and its processes' /proc.
    assert report["files"] and report["proc"]
    everything = json.dumps(report)
    pem = flow.settings.private_key_pem() or ""
    secrets = {
        "the App's private key": pem.splitlines()[1],
        "the webhook secret": webhook_secret,
        "the operator's model key": model_key,
        "the callback token": run_token(callback_key(pem), run.id),
        **{f"GitHub token {t[:8]}...": t for t in fake_github.state.tokens},
    }
    assert fake_github.state.tokens  # the gateway did mint the clone's token
    found = [name for name, value in secrets.items() if value in everything]
    assert found == []
    # Its one credential is its run's gateway credential, where the CLIs expect a key.
    credential = credentials.issue(gateway_key(pem), run.id)
    assert report["environ"]["ANTHROPIC_API_KEY"] == credential
    # Only the gateway answers: not GitHub directly, nor through the proxy, nor elsewhere.
    assert report["gateway_healthz"] == 200
    assert report["direct_to_github"].startswith("refused")
    assert report["proxy_to_github"].startswith("HTTP/1.1 403")
    assert report["proxy_to_elsewhere"].split()[1] in ("403", "502")
