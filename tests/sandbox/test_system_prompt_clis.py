"""A profile's system prompt reaches the model through the real Codex: its
developer_instructions arrive as a developer message, beside Codex's own instructions."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sandbox import exitcodes
from tests.clis.codex_scenarios import NO_RETRIES, PROMPT
from tests.clis.conftest import cli_scratch, codex_world  # noqa: F401 (fixtures)
from tests.clis.support import CliWorld
from tests.clis.test_codex import site  # noqa: F401 (the fixture)
from tests.fakes.model_openai import OpenAIDouble, Turn
from tests.sandbox.support import Site

pytestmark = pytest.mark.slow

SYSTEM_PROMPT = 'You serve the "backend" team — keep modules small.\nSecond line.'


async def test_codex_sends_the_system_prompt_as_developer_instructions(
        codex_world: CliWorld, site: Site) -> None:  # noqa: F811
    codex_home = site.tmp / "home" / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(NO_RETRIES)
    async with OpenAIDouble([Turn(text="Nothing to change.")], prefix="/openai") as model:
        spec = replace(site.spec(agent="codex", prompt=PROMPT, timeout=120),
                       gateway_url=model.base_url, system_prompt=SYSTEM_PROMPT)
        outcome = await codex_world.run_sandbox(site.tmp, spec)

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    [request] = model.main_requests
    texts = [part["text"] for item in request.body["input"]
             if item.get("type") == "message" and item.get("role") == "developer"
             for part in item["content"] if part.get("type") == "input_text"]
    # Its own text, exactly, after Codex's own instructions, which stay (its
    # model_instructions_file would have replaced them).
    assert SYSTEM_PROMPT in texts
    own = next(n for n, text in enumerate(texts) if text.startswith("You are Codex"))
    assert own < texts.index(SYSTEM_PROMPT)
    user = json.dumps([item for item in request.body["input"] if item.get("role") == "user"])
    assert "keep modules small" not in user
