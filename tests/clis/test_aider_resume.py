"""The real aider continuing an earlier run's chat through `python -m sandbox`: its chat
history (a Markdown file the runner keeps outside the checkout) goes back to the bot, and the
next run, in another directory and home, restores it (`--restore-chat-history`), so the
Messages double sees the earlier exchange in the next run's first request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox import exitcodes
from sandbox.archive import unpack
from tests.clis.aider_scenarios import offline_model_info
from tests.clis.support import SESSION_LIMIT as LIMIT
from tests.clis.support import CliWorld, RunnerOutcome, run_keeping_session
from tests.fakes.model_anthropic import AnthropicDouble, Turn
from tests.sandbox.support import GATEWAY_TOKEN, Site, make_site

pytestmark = pytest.mark.slow

FIRST_PROMPT = "Explain what this repository holds. Marker ALPHA-3."
FIRST_ANSWER = "It holds a demo README. Marker BRAVO-3."
SECOND_PROMPT = "Say it shorter. Marker CHARLIE-3."


@pytest.fixture
async def site(tmp_path: Path, aiohttp_server: Any, aider_world: CliWorld) -> Site:
    return await make_site(tmp_path, aiohttp_server)


async def run(world: CliWorld, site: Site, model: AnthropicDouble, prompt: str, *,
              resume_session: bool = False) -> RunnerOutcome:
    return await run_keeping_session(world, site, "aider", model.base_url, prompt,
                                     resume_session=resume_session,
                                     prepare=lambda tmp: offline_model_info(tmp / "home"))


async def test_the_next_run_restores_the_aider_chat(aider_world: CliWorld, site: Site) -> None:
    async with AnthropicDouble([Turn(text=FIRST_ANSWER), Turn(text="A demo.")],
                               prefix="/anthropic", toolless=True) as model:
        first = await run(aider_world, site, model, FIRST_PROMPT)
        assert first.returncode == exitcodes.OK, first.stderr
        [uploaded] = site.bot.sessions
        session = unpack(uploaded, LIMIT)
        assert session.agent == "aider"
        history = session.files[f"{session.session_id}.md"].decode()
        assert FIRST_PROMPT in history and FIRST_ANSWER in history
        assert GATEWAY_TOKEN not in history
        earlier = len(model.main_requests)

        site.bot.session_to_give = uploaded
        second = await run(aider_world, site, model, SECOND_PROMPT, resume_session=True)

    assert second.returncode == exitcodes.OK, second.stderr
    [result] = site.bot.results
    assert result["stats"]["session_resumed"] is True, result["stats"]
    request = model.main_requests[earlier]
    assert FIRST_PROMPT in request.text and FIRST_ANSWER in request.text
    assert request.text.index(FIRST_ANSWER) < request.text.index(SECOND_PROMPT)
    # Nothing of it in the checkout: no changes.
    assert result["status"] == "no_changes"
    history = unpack(site.bot.sessions[-1], LIMIT).files[f"{session.session_id}.md"].decode()
    assert SECOND_PROMPT in history
