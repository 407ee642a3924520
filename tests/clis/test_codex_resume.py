"""The real Codex continuing an earlier run's session through `python -m sandbox`
(`codex exec resume <id>`): its rollout file goes back to the bot, and the next run, in
another directory and home, resumes it, so the Responses double sees the earlier turns in its
first request; an id Codex cannot find starts fresh and says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox import exitcodes
from sandbox.archive import Session, pack, unpack
from tests.clis.codex_scenarios import ADD_MODULE, NO_RETRIES, code
from tests.clis.support import SESSION_LIMIT as LIMIT
from tests.clis.support import CliWorld, RunnerOutcome, run_keeping_session
from tests.fakes.model_openai import OpenAIDouble, Turn
from tests.sandbox.support import GATEWAY_TOKEN, Site, make_site

pytestmark = pytest.mark.slow

FIRST_PROMPT = "Add src/new_module.py. Marker ALPHA-9."
FIRST_ANSWER = "Added the module. Marker BRAVO-9."
SECOND_PROMPT = "Now document it. Marker CHARLIE-9."


@pytest.fixture
async def site(tmp_path: Path, aiohttp_server: Any, codex_world: CliWorld) -> Site:
    return await make_site(tmp_path, aiohttp_server)


def codex_home(tmp: Path) -> None:
    """Codex's own retries off, in the run's fresh home."""
    home = tmp / "home" / ".codex"
    home.mkdir(parents=True)
    (home / "config.toml").write_text(NO_RETRIES)


async def run(world: CliWorld, site: Site, model: OpenAIDouble, prompt: str, *,
              resume_session: bool = False) -> RunnerOutcome:
    return await run_keeping_session(world, site, "codex", model.base_url, prompt,
                                     resume_session=resume_session, prepare=codex_home)


async def test_the_next_run_resumes_the_codex_session(codex_world: CliWorld,
                                                       site: Site) -> None:
    script = [Turn(tool_calls=[code(("apply_patch", ADD_MODULE))]), Turn(text=FIRST_ANSWER),
              Turn(text="Documented.")]
    async with OpenAIDouble(script, prefix="/openai") as model:
        first = await run(codex_world, site, model, FIRST_PROMPT)
        assert first.returncode == exitcodes.OK, first.stderr
        [uploaded] = site.bot.sessions
        session = unpack(uploaded, LIMIT)
        assert session.agent == "codex"
        [(name, content)] = session.files.items()
        assert name.startswith("sessions/") and name.endswith(f"-{session.session_id}.jsonl")
        assert FIRST_PROMPT in content.decode() and GATEWAY_TOKEN not in content.decode()
        earlier = len(model.main_requests)

        site.bot.session_to_give = uploaded
        second = await run(codex_world, site, model, SECOND_PROMPT, resume_session=True)

    assert second.returncode == exitcodes.OK, second.stderr
    [result] = site.bot.results
    assert result["stats"]["session_resumed"] is True, result["stats"]
    request = model.main_requests[earlier]
    assert FIRST_PROMPT in request.text and FIRST_ANSWER in request.text
    assert request.text.index(FIRST_ANSWER) < request.text.index(SECOND_PROMPT)
    resumed = unpack(site.bot.sessions[-1], LIMIT)
    assert resumed.session_id == session.session_id


async def test_a_session_codex_cannot_find_starts_fresh(codex_world: CliWorld,
                                                         site: Site) -> None:
    site.bot.session_to_give = pack(Session(
        "codex", "019a0000-0000-7000-8000-000000000001",
        {"sessions/2026/01/01/rollout-2026-01-01T00-00-00-"
         "019a0000-0000-7000-8000-0000000000ff.jsonl": b"{}\n"}), LIMIT)
    async with OpenAIDouble([Turn(text="Done.")], prefix="/openai") as model:
        outcome = await run(codex_world, site, model, SECOND_PROMPT, resume_session=True)

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    stats = site.bot.results[0]["stats"]
    assert stats["session_resumed"] is False
    assert stats["session_note"].startswith("the agent could not load the earlier session")
    assert [r.text.count(SECOND_PROMPT) for r in model.main_requests] == [1]
