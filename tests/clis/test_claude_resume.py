"""The real Claude Code continuing an earlier run's session through `python -m sandbox`: the
session goes back to the bot at the end of a run (its credentials masked), and the next run,
in another directory, resumes it, so the model double sees the earlier turns in its first
request; a missing or unloadable session starts fresh and says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox import exitcodes, resume
from sandbox.archive import Session, pack, unpack
from tests.clis.support import SESSION_LIMIT as LIMIT
from tests.clis.support import CliWorld, RunnerOutcome, run_keeping_session
from tests.fakes.model_anthropic import AnthropicDouble, ToolCall, Turn
from tests.sandbox.support import GATEWAY_TOKEN, Site, make_site

pytestmark = pytest.mark.slow

FIRST_PROMPT = "Add src/greet.py that prints a greeting. Marker ALPHA-7."
FIRST_ANSWER = "Added src/greet.py. Marker BRAVO-7."
SECOND_PROMPT = "Make the greeting louder."


@pytest.fixture
async def site(tmp_path: Path, aiohttp_server: Any, claude_world: CliWorld) -> Site:
    site = await make_site(tmp_path, aiohttp_server)
    site.tmp = claude_world.run_dir()
    return site


async def run(world: CliWorld, site: Site, model: AnthropicDouble, prompt: str, *,
              resume_session: bool = False) -> RunnerOutcome:
    return await run_keeping_session(world, site, "claude", model.base_url, prompt,
                                     resume_session=resume_session,
                                     env={"CLAUDE_CODE_MAX_RETRIES": "0"})


def first_turns() -> list[Turn]:
    return [Turn(tool_calls=[ToolCall("Write", {"file_path": "{cwd}/src/greet.py",
                                                "content": "print('hi')\n"}),
                             ToolCall("Bash", {"command": "env", "description": "Look"})]),
            Turn(text=FIRST_ANSWER)]


async def test_the_next_run_resumes_the_session_in_another_directory(
        claude_world: CliWorld, site: Site) -> None:
    async with AnthropicDouble([*first_turns(), Turn(text="Louder now.")],
                               prefix="/anthropic") as model:
        first = await run(claude_world, site, model, FIRST_PROMPT)
        assert first.returncode == exitcodes.OK, first.stderr
        [uploaded] = site.bot.sessions
        session = unpack(uploaded, LIMIT)
        assert session.agent == "claude"
        [(name, content)] = [(n, c) for n, c in session.files.items() if n.endswith(".jsonl")]
        assert name == f"{session.session_id}.jsonl"
        text = content.decode()
        # The conversation is there, with the run's credential (`env` printed it) masked.
        assert FIRST_PROMPT in text and FIRST_ANSWER in text
        assert "ANTHROPIC_API_KEY=" in text and GATEWAY_TOKEN not in text
        assert site.bot.results[0]["stats"]["session_resumed"] is False
        earlier = len(model.main_requests)

        site.bot.session_to_give = uploaded
        second = await run(claude_world, site, model, SECOND_PROMPT, resume_session=True)

    assert second.returncode == exitcodes.OK, second.stderr
    assert site.bot.session_gets == 1
    [result] = site.bot.results
    assert result["stats"]["session_resumed"] is True
    assert "session_note" not in result["stats"]
    # The second run's first request carries the first run's turns, then the new prompt.
    request = model.main_requests[earlier]
    assert FIRST_PROMPT in request.text and FIRST_ANSWER in request.text
    assert SECOND_PROMPT in request.text
    assert request.text.index(FIRST_PROMPT) < request.text.index(SECOND_PROMPT)
    # And the session it hands back is the same one, now longer.
    resumed = unpack(site.bot.sessions[-1], LIMIT)
    assert resumed.session_id == session.session_id
    assert SECOND_PROMPT in resumed.files[name].decode()


async def test_a_missing_session_starts_fresh_and_says_why(claude_world: CliWorld,
                                                            site: Site) -> None:
    async with AnthropicDouble([Turn(text="Done.")], prefix="/anthropic") as model:
        outcome = await run(claude_world, site, model, SECOND_PROMPT, resume_session=True)

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    assert site.bot.session_gets == 1  # asked, and the bot had none (404)
    stats = site.bot.results[0]["stats"]
    assert stats["session_resumed"] is False
    assert stats["session_note"] == resume.NOTE_MISSING
    [request] = model.main_requests
    assert SECOND_PROMPT in request.text and FIRST_PROMPT not in request.text
    assert len(site.bot.sessions) == 1  # its own session still goes back


async def test_a_session_the_cli_cannot_load_starts_fresh_and_says_why(
        claude_world: CliWorld, site: Site) -> None:
    # A well-formed archive whose session id names no file of it: Claude Code says
    # "No conversation found", and the runner starts the agent again with a new session.
    site.bot.session_to_give = pack(Session(
        "claude", "5d0c2a8e-1b7f-4c3e-9a6d-2f4e8b1c7a90",
        {"0b6f0c1e-8f0e-4d51-9b0a-5e5f3c1d2a11.jsonl": b'{"type":"summary"}\n'}), LIMIT)
    async with AnthropicDouble([Turn(text="Done.")], prefix="/anthropic") as model:
        outcome = await run(claude_world, site, model, SECOND_PROMPT, resume_session=True)

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    [result] = site.bot.results
    assert result["status"] == "no_changes"
    assert result["stats"]["session_resumed"] is False
    note = result["stats"]["session_note"]
    assert note.startswith("the agent could not load the earlier session (")
    assert "No conversation found with session ID: 5d0c2a8e" in note
    assert [r.text.count(SECOND_PROMPT) for r in model.main_requests] == [1]
    lines = [e["text"] for e in site.bot.kinds("log") if e.get("stream") == "runner"]
    assert any(line.startswith("Starting a fresh session: the agent could not load")
               for line in lines)
