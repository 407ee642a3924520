"""From a label to a pull request with the real aider: the local executor runs the sandbox as
an unprivileged user, and the in-process gateway forwards its Messages requests to the
Anthropic double with the operator's key, which the sandbox never holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config.settings import Settings
from bot.executors.local import LocalExecutor
from tests.clis.support import CliWorld
from tests.clis.test_claude_flow import switch_user_wrapper
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.fakes.model_anthropic import AnthropicDouble, Failure, Turn
from tests.flow.harness import REPO, Flow

pytestmark = pytest.mark.slow

OPERATOR_KEY = "sk-ant-api03-operator-key-0123456789abcdefghijklmnopqrstuvwxyz"
SUMMARY = "I added a greeting script, greeted the world in the README and removed docs/old.md."
# Edit blocks for the new and the changed file; the deletion is a command aider runs.
ANSWER = (f"{SUMMARY}\n\n"
          "src/greet.py\n```python\n<<<<<<< SEARCH\n=======\nprint('hi')\n>>>>>>> REPLACE\n"
          "```\n\n"
          "README.md\n```\n<<<<<<< SEARCH\n# hello\n=======\n# hello, world\n>>>>>>> REPLACE\n"
          "```\n\n"
          "```bash\nrm docs/old.md\n```\n")


def aider_flow_executor(flow: Flow, world: CliWorld, tmp_path: Path, model_url: str) -> None:
    """Point the flow at the real aider, run as the unprivileged account by the local
    executor, with the in-process gateway forwarding to the model double."""
    flow.settings = flow.settings.model_copy(update={
        "default_agent": "aider", "agent_command": None,
        "anthropic_url": model_url, "anthropic_api_key": OPERATOR_KEY})
    run_root = world.run_dir()
    run_root.chmod(0o755)  # the executor's run directories go here, one per run
    wrapper = switch_user_wrapper(world, run_root / "python-as-agent")
    flow.make_executor = lambda: LocalExecutor(
        state_dir=tmp_path / "state", run_root=run_root, python=wrapper, bwrap=False,
        kill_grace_seconds=2.0,
        env={"PATH": f"{world.bin_dir}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"})


async def test_label_to_pull_request_with_the_real_aider(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        aider_world: CliWorld) -> None:
    # Asked twice: the files join the chat, then the blocks are applied.
    async with AnthropicDouble([Turn(text=ANSWER), Turn(text=ANSWER)], toolless=True) as model:
        flow = await Flow.create(fake_github, tmp_path, make_settings,
                                 f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}")
        aider_flow_executor(flow, aider_world, tmp_path, model.base_url)
        await flow.start()
        try:
            base = flow.branches()["main"]
            await flow.deliver("issues", p.issues_labeled())
            run = await flow.settled((await flow.wait_for_run()).id, 120)
        finally:
            await flow.close()

    assert (run.state, run.error) == ("succeeded", None), run.error
    assert flow.files(run.branch) == {"README.md": b"# hello, world\n",
                                      "src/app.py": b"print('hello')\n",
                                      "src/greet.py": b"print('hi')\n"}
    assert flow.fake.repo(REPO).git.read_commit(run.commit_sha)["parents"] == [base]
    [pull] = flow.pulls()
    assert pull.number == run.pr_number and SUMMARY in pull.body
    [check] = flow.check_runs()
    assert (check.status, check.conclusion) == ("completed", "success")
    # The operator's key reached the provider, through the gateway, on every request.
    assert model.turns_played == 2 and model.exhausted == 0
    assert {r.credential for r in model.requests} == {OPERATOR_KEY}
    assert {r.path for r in model.requests} == {"/v1/messages"}
    stats = run.result["stats"]
    assert stats["agent_turns"] == 2 and stats["agent_input_tokens"] > 0


async def test_a_model_error_fails_the_run_with_aiders_reason_in_the_check_run(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        aider_world: CliWorld) -> None:
    async with AnthropicDouble([Turn(failure=Failure.unauthorized())], toolless=True) as model:
        flow = await Flow.create(fake_github, tmp_path, make_settings,
                                 f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}")
        aider_flow_executor(flow, aider_world, tmp_path, model.base_url)
        await flow.start()
        try:
            await flow.deliver("issues", p.issues_labeled())
            run = await flow.settled((await flow.wait_for_run()).id, 120)
        finally:
            await flow.close()

    assert run.state == "failed"
    assert len(model.requests) == 1
    says = ("aider stopped (AuthenticationError): The API provider is not able to authenticate "
            "you. Check your API key")
    assert says in run.error
    [check] = flow.check_runs()
    assert check.conclusion == "failure"
    assert says in check.output["summary"] + check.output.get("text", "")
    assert flow.pulls() == []
