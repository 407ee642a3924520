"""The real OpenCode continuing an earlier run's session through `python -m sandbox`: it keeps
sessions in a database, so the runner has it export the session as JSON at the end of a run
and import it before the next (`opencode run --session <id>`), in another directory and home;
the Messages double sees the earlier turns in the next run's first request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sandbox import exitcodes
from sandbox.archive import Session, pack, unpack
from tests.clis.support import SESSION_LIMIT as LIMIT
from tests.clis.support import CliWorld, RunnerOutcome, run_keeping_session
from tests.fakes.model_anthropic import AnthropicDouble, Turn
from tests.sandbox.support import GATEWAY_TOKEN, Site, make_site

pytestmark = pytest.mark.slow

FIRST_PROMPT = "Say hello. Marker ALPHA-5."
FIRST_ANSWER = "Hello there. Marker BRAVO-5."
SECOND_PROMPT = "Now say it louder. Marker CHARLIE-5."


@pytest.fixture
async def site(tmp_path: Path, aiohttp_server: Any, opencode_world: CliWorld) -> Site:
    return await make_site(tmp_path, aiohttp_server)


async def run(world: CliWorld, site: Site, model: AnthropicDouble, prompt: str, *,
              resume_session: bool = False) -> RunnerOutcome:
    return await run_keeping_session(world, site, "opencode", model.base_url, prompt,
                                     resume_session=resume_session)


async def test_the_next_run_resumes_the_opencode_session(opencode_world: CliWorld,
                                                          site: Site) -> None:
    async with AnthropicDouble([Turn(text=FIRST_ANSWER), Turn(text="HELLO.")],
                               prefix="/anthropic") as model:
        first = await run(opencode_world, site, model, FIRST_PROMPT)
        assert first.returncode == exitcodes.OK, first.stderr
        [uploaded] = site.bot.sessions
        session = unpack(uploaded, LIMIT)
        assert session.agent == "opencode" and session.session_id.startswith("ses_")
        exported = json.loads(session.files[f"{session.session_id}.json"])
        assert exported["info"]["id"] == session.session_id
        assert FIRST_PROMPT in json.dumps(exported) and GATEWAY_TOKEN not in json.dumps(exported)
        earlier = len(model.main_requests)

        site.bot.session_to_give = uploaded
        second = await run(opencode_world, site, model, SECOND_PROMPT, resume_session=True)

    assert second.returncode == exitcodes.OK, second.stderr
    [result] = site.bot.results
    assert result["stats"]["session_resumed"] is True, result["stats"]
    request = model.main_requests[earlier]
    assert FIRST_PROMPT in request.text and FIRST_ANSWER in request.text
    assert request.text.index(FIRST_ANSWER) < request.text.index(SECOND_PROMPT)
    assert unpack(site.bot.sessions[-1], LIMIT).session_id == session.session_id


async def test_a_session_opencode_cannot_import_or_find_starts_fresh(
        opencode_world: CliWorld, site: Site) -> None:
    # Refused by `opencode import` (not an export); then an export it imports whose id the
    # manifest does not name, so `run --session` says "Session not found".
    not_an_export = pack(Session("opencode", "ses_0000000000000000000000000", {
        "ses_0000000000000000000000000.json": b'{"info": {"id": "not it"}}'}), LIMIT)
    async with AnthropicDouble([Turn(text="First."), Turn(text="Second."), Turn(text="Third.")],
                               prefix="/anthropic") as model:
        await run(opencode_world, site, model, FIRST_PROMPT)
        real = unpack(site.bot.sessions[0], LIMIT)
        other = "ses_1111111111111111111111111"
        misnamed = pack(Session("opencode", other, {
            f"{other}.json": real.files[f"{real.session_id}.json"]}), LIMIT)
        notes = []
        for given in (not_an_export, misnamed):
            site.bot.session_to_give = given
            before = len(model.main_requests)
            outcome = await run(opencode_world, site, model, SECOND_PROMPT, resume_session=True)
            assert outcome.returncode == exitcodes.OK, outcome.stderr
            stats = site.bot.results[0]["stats"]
            assert stats["session_resumed"] is False
            notes.append(stats["session_note"])
            # The run that went on is a fresh one: no earlier turn in its request.
            [request] = model.main_requests[before:]
            assert FIRST_PROMPT not in request.text and SECOND_PROMPT in request.text

    assert notes[0].startswith("the earlier session was refused: opencode could not import")
    assert notes[1].startswith("the agent could not load the earlier session (")
    assert "Session not found" in notes[1]
