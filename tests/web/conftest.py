"""The `pages` fixture: a started bot with its run pages, on the fake GitHub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bot.config.settings import Settings
from tests.fakes.github import FakeGitHub
from tests.web.harness import Pages, settings_for


@pytest.fixture
async def pages(fake_github: FakeGitHub, database_url: str,
                make_settings: Callable[..., Settings]) -> AsyncIterator[Pages]:
    Pages.arrange(fake_github)
    made = Pages(fake_github, settings_for(fake_github, make_settings,
                                           database_url=database_url))
    await made.start()
    try:
        yield made
    finally:
        await made.close()
