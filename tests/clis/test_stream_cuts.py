"""A stream cut on every try ends the run in the CLI's own words, for aider and OpenCode.

Neither lets its back-off be shortened (aider: `RETRY_TIMEOUT = 60` in aider/models.py, 8
retries 0.25 s doubling, 63.75 s of waiting; OpenCode: SessionRetry's constants, 5 retries
2 s doubling with up to 25 % jitter, at most 30 s, and a cut carries no `retry-after`), so
each run waits a minute or more: the two wait side by side, each with its own repository,
recording bot and model double.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from sandbox import exitcodes
from tests.clis import opencode_scenarios
from tests.clis.support import CliWorld
from tests.clis.test_aider import RETRIES as AIDER_RETRIES
from tests.clis.test_aider import run_aider
from tests.clis.test_opencode import run_opencode
from tests.fakes.model_anthropic import Failure, Turn
from tests.sandbox.support import Site, make_site

pytestmark = pytest.mark.slow


async def a_site(tmp_path: Path, aiohttp_server: Any, world: CliWorld) -> Site:
    await asyncio.to_thread(tmp_path.mkdir)
    site = await make_site(tmp_path, aiohttp_server)
    site.tmp = world.run_dir()
    return site


async def test_a_stream_cut_on_every_try_ends_the_run_in_the_clis_words(
        tmp_path: Path, aiohttp_server: Any, aider_world: CliWorld,
        opencode_world: CliWorld) -> None:
    aider_site = await a_site(tmp_path / "aider", aiohttp_server, aider_world)
    opencode_site = await a_site(tmp_path / "opencode", aiohttp_server, opencode_world)
    aider_script = [Turn(text="Let me think about the greeting before I change anything.",
                         failure=Failure.stream_cut(), times=AIDER_RETRIES + 1)]
    (aider, aider_model), (opencode, opencode_model) = await asyncio.gather(
        run_aider(aider_world, aider_site, aider_script),
        run_opencode(opencode_world, opencode_site,
                     opencode_scenarios.a_model_error(Failure.stream_cut())))

    # aider stops in litellm's words and exits 0; the parser fails the run.
    assert aider.returncode == exitcodes.AGENT, aider.stderr
    assert len(aider_model.requests) == AIDER_RETRIES + 1 and aider_model.exhausted == 0
    [result] = aider_site.bot.results
    assert result["status"] == "failed"
    assert result["summary"] == ("aider stopped (APIConnectionError): AnthropicException - peer "
                                 "closed connection without sending complete message body "
                                 "(incomplete chunked read)")
    assert aider_site.bot.kinds("message") == []  # the cut halves were never an answer
    assert result["changes"] == []

    # OpenCode stops in Bun's words for the dropped connection (which depend on where its
    # reader was when the connection went: both seen on the same script) and exits 1.
    assert opencode.returncode == exitcodes.AGENT, opencode.stderr
    assert len(opencode_model.main_requests) == 1 + opencode_scenarios.RETRIES
    [result] = opencode_site.bot.results
    assert result["status"] == "failed"
    assert re.fullmatch(r"The agent exited with code 1\. OpenCode stopped: (Connection reset by "
                        r"server|Cannot connect to API: The socket connection was closed "
                        r"unexpectedly\. .*)\.?", result["summary"]), result["summary"]
    assert result["stats"]["failed_phase"] == "agent"
    assert [m["text"] for m in opencode_site.bot.kinds("message")] == []
