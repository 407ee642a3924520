"""A follow-up on agentbot's pull request with the real Codex: the next run continues the
earlier run's Codex session (`codex exec resume`), each run with a home of its own (no shared
CODEX_HOME), so the session reaches it only through the bot; the Responses double receives
the earlier turns in the follow-up's first request, and the check run says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config.settings import Settings
from tests.clis.codex_scenarios import code
from tests.clis.support import CliWorld, point_flow_at
from tests.clis.test_codex_flow import GREET, OPERATOR_KEY
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.fakes.model_openai import OpenAIDouble, Turn
from tests.flow.harness import Flow

pytestmark = pytest.mark.slow

FIRST_ANSWER = "Added src/greet.py. Marker BRAVO-11."
LOUDER = "make the greeting louder, marker CHARLIE-11"
LOUD = "*** Begin Patch\n*** Update File: src/greet.py\n@@\n-print('hi')\n+print('HI!')\n" \
       "*** End Patch\n"


async def test_a_follow_up_on_the_pull_request_resumes_the_codex_session(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        codex_world: CliWorld) -> None:
    script = [Turn(tool_calls=[code(("apply_patch", GREET))]), Turn(text=FIRST_ANSWER),
              Turn(tool_calls=[code(("apply_patch", LOUD))]), Turn(text="Louder now.")]
    async with OpenAIDouble(script) as model:
        flow = await Flow.create(fake_github, tmp_path, make_settings,
                                 f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}")
        point_flow_at(flow, codex_world, tmp_path, "codex",
                      {"openai_url": model.base_url, "openai_api_key": OPERATOR_KEY})
        await flow.start()
        try:
            await flow.deliver("issues", p.issues_labeled())
            first = await flow.settled((await flow.wait_for_run()).id, 90)
            assert (first.state, first.error) == ("succeeded", None), first.error
            [pull] = flow.pulls()
            at = len(model.main_requests)
            await flow.comment(f"/agent {LOUDER}", number=pull.number, on_pull_request=True)
            second = await flow.settled((await flow.wait_for_run(2)).id, 90)
        finally:
            await flow.close()

    assert (second.state, second.error) == ("succeeded", None), second.error
    assert second.result["stats"]["session_resumed"] is True
    request = model.main_requests[at]
    assert FIRST_ANSWER in request.text and "CHARLIE-11" in request.text
    assert request.text.index(FIRST_ANSWER) < request.text.index("CHARLIE-11")
    assert flow.files(first.branch)["src/greet.py"] == b"print('HI!')\n"
    [check] = [c for c in flow.check_runs() if c.external_id == str(second.id)]
    assert f"**Session:** resumed the agent session of run #{first.id}." in \
        check.output["summary"]
