"""Structured logging: JSON lines, context ids across awaits and tasks, redaction everywhere."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import re
import string
import sys

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.logs import (
    AccessLogger,
    ContextLogRecord,
    configure_logging,
    current_log_context,
    log_context,
    reset_logging,
)
from bot.redact import clear_registered_secrets, register_secret

_rng = random.Random(7)
TOKEN = "ghs_" + "".join(_rng.choice(string.ascii_letters + string.digits) for _ in range(36))
log = logging.getLogger("bot.test")


@pytest.fixture
def stream():
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    yield out
    reset_logging()
    clear_registered_secrets()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_fields(stream: io.StringIO) -> None:
    log.info("processed %s in %d ms", "issue_comment", 12)
    (line,) = lines(stream)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    assert line == {"ts": line["ts"], "level": "info", "logger": "bot.test",
                    "msg": "processed issue_comment in 12 ms"}


def test_ids_from_context_and_extras(stream: io.StringIO) -> None:
    with log_context(delivery_id="d-1", installation_id=42):
        log.warning("first")
        with log_context(run_id=7, delivery_id="d-2"):
            log.info("second", extra={"event": "issues", "payload": {"n": 1, "tags": ("a",)}})
        log.info("third")
    log.info("outside")
    first, second, third, outside = lines(stream)
    assert (first["delivery_id"], first["installation_id"], "run_id" in first) == ("d-1", 42,
                                                                                  False)
    assert (second["delivery_id"], second["run_id"], second["installation_id"]) == ("d-2", 7, 42)
    assert second["event"] == "issues" and second["payload"] == {"n": 1, "tags": ["a"]}
    assert third["delivery_id"] == "d-1" and "run_id" not in third
    assert not {"delivery_id", "run_id", "installation_id"} & set(outside)
    assert current_log_context() == {}


def test_explicit_extra_id_wins_over_context(stream: io.StringIO) -> None:
    with log_context(run_id=1):
        log.info("scheduler", extra={"run_id": 2})
    (line,) = lines(stream)
    assert line["run_id"] == 2


def test_extras_cannot_replace_core_fields(stream: io.StringIO) -> None:
    log.info("m", extra={"level": "fake", "ts": "x", "when": object.__new__(object)})
    (line,) = lines(stream)
    assert line["level"] == "info" and line["extra.level"] == "fake"
    assert line["when"].startswith("<object object")


def test_unknown_context_name_is_refused() -> None:
    with pytest.raises(TypeError, match="not pr_number"), log_context(pr_number=3):
        pass


async def test_context_survives_awaits_and_reaches_tasks(stream: io.StringIO) -> None:
    async def worker(name: str) -> None:
        await asyncio.sleep(0)
        log.info(name)

    with log_context(delivery_id="d-9", run_id=3):
        await asyncio.sleep(0)
        log.info("after await")
        task = asyncio.create_task(worker("in task"))
    # The task copied the context when it was created, so it keeps the ids after the block.
    await task
    other = asyncio.create_task(worker("unrelated"))
    await other
    by_msg = {line["msg"]: line for line in lines(stream)}
    assert by_msg["after await"]["delivery_id"] == "d-9"
    assert (by_msg["in task"]["delivery_id"], by_msg["in task"]["run_id"]) == ("d-9", 3)
    assert "delivery_id" not in by_msg["unrelated"]


async def test_concurrent_deliveries_do_not_mix(stream: io.StringIO) -> None:
    async def handle(delivery: str) -> None:
        with log_context(delivery_id=delivery):
            for step in range(3):
                await asyncio.sleep(0)
                log.info("step %d of %s", step, delivery)

    await asyncio.gather(*(handle(f"d-{i}") for i in range(5)))
    records = [line for line in lines(stream) if line["logger"] == "bot.test"]
    assert len(records) == 15
    assert all(line["msg"].endswith(line["delivery_id"]) for line in records)


def test_exception_is_in_exc_and_redacted(stream: io.StringIO) -> None:
    try:
        raise RuntimeError(f"clone failed for https://x-access-token:{TOKEN}@github.com/o/r")
    except RuntimeError:
        log.exception("checkout of %s failed", "o/r")
    (line,) = lines(stream)
    assert line["level"] == "error" and line["msg"] == "checkout of o/r failed"
    assert "Traceback (most recent call last)" in line["exc"]
    assert "RuntimeError: clone failed" in line["exc"]
    assert TOKEN not in stream.getvalue()
    assert "[REDACTED:github_token]" in line["exc"]


def test_secrets_redacted_in_message_args_extras_and_stack(stream: io.StringIO) -> None:
    register_secret("It's a Secret to Everybody")
    log.info("token %s minted", TOKEN, extra={"headers": {"Authorization": f"token {TOKEN}"},
                                              "note": ["It's a Secret to Everybody"]},
             stack_info=True)
    log.info(f"inline {TOKEN}")
    output = stream.getvalue()
    assert TOKEN not in output and "Secret to Everybody" not in output
    first, second = lines(stream)
    assert first["msg"] == "token [REDACTED:github_token] minted"
    assert first["headers"] == {"Authorization": "token [REDACTED:github_token]"}
    assert first["note"] == ["[REDACTED:registered_secret]"]
    assert "stack" in first
    assert second["msg"] == "inline [REDACTED:github_token]"


def test_caplog_sees_ids_and_no_secrets(stream: io.StringIO, caplog) -> None:
    caplog.set_level(logging.INFO)
    with log_context(run_id=5):
        log.info("using %s", TOKEN)
    (record,) = [r for r in caplog.records if r.name == "bot.test"]
    assert isinstance(record, ContextLogRecord)
    assert record.run_id == 5 and record.delivery_id is None
    assert record.getMessage() == "using [REDACTED:github_token]"
    assert TOKEN not in caplog.text
    # Configuring again keeps pytest's capture handler in place.
    configure_logging("info", "json", stream=stream)
    log.info("still captured")
    assert caplog.records[-1].getMessage() == "still captured"


def test_configure_is_idempotent_and_switches_format() -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    out = io.StringIO()
    try:
        configure_logging("info", "json", stream=out)
        configure_logging("info", "json", stream=out)
        configure_logging("INFO", "text", stream=out)
        added = [h for h in root.handlers if h not in before]
        assert len(added) == 1
        with log_context(delivery_id="abc"):
            log.info("hello %s", TOKEN, extra={"event": "issues", "minted": TOKEN})
        log.debug("hidden at info")
        text = out.getvalue()
        assert text.count("\n") == 1
        assert re.fullmatch(
            r"\S+Z INFO    bot\.test: hello \[REDACTED:github_token\] delivery_id=abc "
            r"event=issues minted=\[REDACTED:github_token\]\n", text)
    finally:
        reset_logging()
    assert root.handlers == before and root.level == level
    assert logging.getLogRecordFactory() is logging.LogRecord


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "xml")])
def test_bad_level_or_format(level: str, fmt: str) -> None:
    with pytest.raises(ValueError):
        configure_logging(level, fmt)


def test_default_stream_follows_sys_stderr(capsys) -> None:
    try:
        configure_logging("info", "json")
        log.info("to stderr")
        assert json.loads(capsys.readouterr().err)["msg"] == "to stderr"
    finally:
        reset_logging()
    assert sys.stderr is not None


def test_body_logging_clients_are_kept_above_debug(stream: io.StringIO) -> None:
    logging.getLogger("kubernetes.client.rest").debug("response body: %s", "c2VjcmV0")
    assert lines(stream) == []


async def test_access_log_through_a_real_server(stream: io.StringIO, aiohttp_client) -> None:
    async def webhook(request: web.Request) -> web.Response:
        log.info("inside handler")
        return web.Response(status=202, text="accepted")

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    server = TestServer(app)
    await server.start_server(access_log_class=AccessLogger)
    client = await aiohttp_client(server)
    response = await client.post(f"/webhook?token={TOKEN}", data=b"{}",
                                 headers={"X-GitHub-Delivery": "72d3162e-cc78-11e3"})
    assert response.status == 202
    await client.close()
    access = [line for line in lines(stream) if line["logger"] == "aiohttp.access"]
    assert len(access) == 1
    (line,) = access
    assert line["msg"] == "POST /webhook 202"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/webhook", 202)
    assert line["delivery_id"] == "72d3162e-cc78-11e3"
    assert line["bytes"] > len("accepted") and line["duration_ms"] >= 0
    assert TOKEN not in stream.getvalue() and "token=" not in stream.getvalue()
