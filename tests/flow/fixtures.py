"""The `flow` fixture: a started agentbot (SQLite file) on the fake GitHub and real sandboxes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.config.settings import Settings
from tests.fakes.github import FakeGitHub
from tests.flow.harness import Flow


@pytest.fixture
async def flow(fake_github: FakeGitHub, tmp_path: Path,
               make_settings: Callable[..., Settings]) -> AsyncIterator[Flow]:
    made = await Flow.create(fake_github, tmp_path, make_settings,
                             f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}")
    await made.start()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def flow_any_db(fake_github: FakeGitHub, tmp_path: Path, database_url: str,
                      make_settings: Callable[..., Settings]) -> AsyncIterator[Flow]:
    """The same on every database the suite runs against (PostgreSQL when configured)."""
    made = await Flow.create(fake_github, tmp_path, make_settings, database_url)
    await made.start()
    try:
        yield made
    finally:
        await made.close()
