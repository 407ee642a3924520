"""Suite-wide fixtures: databases (SQLite files and PostgreSQL), settings, signed requests."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.config.settings import Settings
from bot.logs import ContextLogRecord
from bot.store import migrate
from bot.store.tables import create_engine
from tests.ports import stable_port

# The suite's doubles of GitHub and of the Kubernetes API, as fixtures for every test.
pytest_plugins = ["tests.fakes.github", "tests.fakes.kubeapi", "tests.flow.fixtures"]

PG_ENV = "AGENTBOT_TEST_DATABASE_URL"
WEBHOOK_SECRET = "test-webhook-secret"


def pytest_configure(config: pytest.Config) -> None:
    # Records carry delivery and run ids and are redacted when made, as in `agentbot serve`,
    # so caplog sees what production logs would, and no secret reaches a failure report.
    logging.setLogRecordFactory(ContextLogRecord)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Keep every environment variable of the real process out of Settings in tests.
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "AGENTBOT_")) and name != PG_ENV:
            os.environ.pop(name)


@pytest.fixture(scope="session")
def app_private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: an SQLite file, or a new database on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'agentbot.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set")
    name = f"agentbot_t_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on the fresh database."""
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def make_settings(app_private_key: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings of a configured App; keyword arguments override fields by name."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "github_app_id": 4242,
            "github_private_key": app_private_key,
            "github_webhook_secret": WEBHOOK_SECRET,
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
            "executor": "local",
            "log_format": "text",
            # Free ports: tests that start a gateway run side by side with others that do.
            "gateway_port": stable_port(),
            "gateway_proxy_port": stable_port(),
            # No redelivery pass at start-up (a GitHub call tests do not expect); the tests of
            # the reconciler turn it on.
            "redeliver_interval": 0,
            # Runs of every agent may start (the gateway's keys are declared, not held); the
            # tests of the credentials check set their own.
            "model_providers": "anthropic,openai",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make
