"""Follow-ups on agentbot's pull request with the real Claude Code: the next run continues the
earlier run's agent session (the model double receives the earlier turns in its first
request), `--fresh` starts a new one, and a missing session starts fresh; each run's check run
says which, and so does `/agent status`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from bot.config.settings import Settings
from bot.store.tables import run_sessions
from tests.clis.support import CliWorld
from tests.clis.test_claude_flow import OPERATOR_KEY, claude_flow_executor
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.fakes.model_anthropic import AnthropicDouble, RecordedRequest, ToolCall, Turn
from tests.flow.harness import Flow, until

pytestmark = pytest.mark.slow

FIRST_ANSWER = "Added src/greet.py. Marker BRAVO-7."
LOUDER = "make the greeting louder, marker CHARLIE-7"
FRESH = "say bye instead, marker DELTA-7"
AGAIN = "and once more, marker ECHO-7"


def assistant_turns(request: RecordedRequest) -> int:
    return sum(1 for m in request.body["messages"] if m["role"] == "assistant")


def check_summary(flow: Flow, run_id: int) -> str:
    [check] = [c for c in flow.check_runs() if c.external_id == str(run_id)]
    return str(check.output["summary"])


async def test_a_follow_up_on_the_pull_request_resumes_the_agent_session(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        claude_world: CliWorld) -> None:
    script = [
        # run 1, from the label: writes the file.
        Turn(tool_calls=[ToolCall("Write", {"file_path": "{cwd}/src/greet.py",
                                            "content": "print('hi')\n"})]),
        Turn(text=FIRST_ANSWER),
        # run 2, a follow-up on the PR: resumes, and rewrites it (Claude Code's Write wants
        # a Read of an existing file first in each process, resumed or not).
        Turn(tool_calls=[ToolCall("Read", {"file_path": "{cwd}/src/greet.py"})]),
        Turn(tool_calls=[ToolCall("Write", {"file_path": "{cwd}/src/greet.py",
                                            "content": "print('HI!')\n"})]),
        Turn(text="Louder now."),
        # runs 3 and 4: fresh, each only answers.
        Turn(text="Nothing to change for bye."),
        Turn(text="Nothing more."),
    ]
    async with AnthropicDouble(script) as model:
        flow = await Flow.create(fake_github, tmp_path, make_settings,
                                 f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}")
        claude_flow_executor(flow, claude_world, tmp_path, model.url,
                             CLAUDE_CODE_MAX_RETRIES="0")
        await flow.start()
        try:
            await flow.deliver("issues", p.issues_labeled())
            first = await flow.settled((await flow.wait_for_run()).id, 90)
            assert (first.state, first.error) == ("succeeded", None), first.error
            [pull] = flow.pulls()
            assert "Session:" not in check_summary(flow, first.id)  # nothing to resume

            async def follow_up(text: str, count: int) -> tuple[Any, int]:
                before = len(model.main_requests)
                await flow.comment(f"/agent {text}", number=pull.number, on_pull_request=True)
                run = await flow.settled((await flow.wait_for_run(count)).id, 90)
                assert run.state == "succeeded", run.error
                return run, before

            second, at = await follow_up(LOUDER, 2)
            request = model.main_requests[at]
            # The earlier conversation, then the follow-up's prompt, in the first request.
            assert "Add a greeting" in request.text and FIRST_ANSWER in request.text
            assert request.text.index(FIRST_ANSWER) < request.text.index("CHARLIE-7")
            assert assistant_turns(request) == 2  # run 1's tool call and its answer
            assert second.result["stats"]["session_resumed"] is True
            assert (f"**Session:** resumed the agent session of run #{first.id}."
                    in check_summary(flow, second.id))
            assert flow.files(first.branch)["src/greet.py"] == b"print('HI!')\n"

            third, at = await follow_up(f"run --fresh {FRESH}", 3)
            request = model.main_requests[at]
            # No earlier turn (the PR's body, in the prompt, quotes run 1's summary).
            assert "DELTA-7" in request.text and "CHARLIE-7" not in request.text
            assert assistant_turns(request) == 0
            assert ("**Session:** started fresh, not resuming: `--fresh` asked for one."
                    in check_summary(flow, third.id))

            # The session of run 3 is lost (a wiped directory, say): run 4 starts fresh.
            engine = flow.bot.engine
            assert engine is not None
            async with engine.begin() as conn:
                kept = (await conn.execute(select(run_sessions.c.run_id))).scalars().all()
                assert sorted(kept) == [first.id, second.id, third.id]
                await conn.execute(delete(run_sessions).where(
                    run_sessions.c.run_id == third.id))
            fourth, at = await follow_up(AGAIN, 4)
            request = model.main_requests[at]
            assert "ECHO-7" in request.text and "DELTA-7" not in request.text
            assert assistant_turns(request) == 0
            assert (f"**Session:** started fresh, not resuming: run #{third.id} left no "
                    "session." in check_summary(flow, fourth.id))

            await flow.comment("/agent status", number=pull.number, on_pull_request=True)

            async def status_replied() -> bool:
                return any("Runs of this" in body for body in flow.replies(pull.number))

            await until(status_replied, 30, what="the status reply")
        finally:
            await flow.close()

    [status] = [body for body in flow.replies(pull.number) if "Runs of this" in body]
    assert f"- Run #{second.id} resumed the agent session of run #{first.id}." in status
    assert (f"- Run #{third.id} started fresh, not resuming: `--fresh` asked for one."
            in status)
    # The operator's key reached the provider, and never a stored session.
    assert {r.headers.get("x-api-key") for r in model.main_requests} == {OPERATOR_KEY}
    assert model.exhausted == 0
