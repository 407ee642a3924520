"""The internal API over real HTTP and a real database: auth, schemas, limits, idempotence."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runs import callbacks
from bot.runs.ledger import Created, NewRun, create_run, get_run, transition
from bot.store.tables import RunState, run_events, run_transitions

PEM = "-----BEGIN PRIVATE KEY-----\nnot a real key, only key material\n-----END PRIVATE KEY-----\n"
KEY = callbacks.callback_key(PEM)
RESULT_LIMIT = 4096


async def queue_run(engine: AsyncEngine, *, number: int = 1, installation_id: int = 7,
                    repo_id: int = 100, **fields: Any) -> int:
    """A queued run of octo-org/demo (each number its own issue), like a trigger makes."""
    values: dict[str, Any] = {
        "installation_id": installation_id, "repo_id": repo_id,
        "repo_full_name": "octo-org/demo", "clone_url": "https://github.com/octo-org/demo.git",
        "number": number, "is_pull_request": False, "base_ref": "main", "trigger": "label",
        "sender_login": "octocat", "sender_id": 1, "delivery_id": str(uuid.uuid4()),
        "agent": "claude", "timeout_seconds": 600, "title": "Fix the frobnicator",
        "body": "It frobs twice."}
    values.update(fields)
    outcome = await create_run(engine, NewRun(**values))
    assert isinstance(outcome, Created)
    return outcome.run_id


async def started_run(engine: AsyncEngine, **fields: Any) -> int:
    run_id = await queue_run(engine, **fields)
    assert await transition(engine, run_id, RunState.STARTING, "scheduled")
    return run_id


class Hook:
    """The result hook: records what it was given; can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, callbacks.Result]] = []
        self.fail = False

    async def __call__(self, run_id: int, result: callbacks.Result) -> None:
        self.calls.append((run_id, result))
        if self.fail:
            raise RuntimeError("the publisher fell over")


@pytest.fixture
def hook() -> Hook:
    return Hook()


@pytest.fixture
async def client(aiohttp_client: Any, engine: AsyncEngine, hook: Hook
                 ) -> AsyncIterator[TestClient]:
    app = web.Application()
    callbacks.add_routes(app, engine, KEY, hook, RESULT_LIMIT)
    yield await aiohttp_client(app)


def auth(run_id: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {callbacks.run_token(KEY, run_id)}"}


def event(seq: int, kind: str = "log", **data: Any) -> dict[str, Any]:
    return {"seq": seq, "ts": "2024-05-01T12:00:00Z", "kind": kind, "data": data or {"n": seq}}


RESULT = {"status": "succeeded", "summary": "Fixed it.", "commit_message": "Fix frobbing",
          "changes": [{"path": "a.txt", "mode": "100644",
                       "content_b64": base64.b64encode(b"hello\n").decode()},
                      {"path": "old.txt", "deleted": True}],
          "stats": {"seconds": 3}}


async def stored_events(engine: AsyncEngine, run_id: int) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(run_events).where(
            run_events.c.run_id == run_id).order_by(run_events.c.seq))).all())


async def transitions(engine: AsyncEngine, run_id: int) -> list[tuple[str | None, str]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(run_transitions).where(
            run_transitions.c.run_id == run_id).order_by(run_transitions.c.id))).all()
    return [(r.from_state, r.to_state) for r in rows]


def test_run_tokens_differ_per_run_and_per_key() -> None:
    assert callbacks.run_token(KEY, 1) != callbacks.run_token(KEY, 2)
    assert callbacks.run_token(KEY, 1) != callbacks.run_token(callbacks.callback_key("x"), 1)
    assert callbacks.run_token(KEY, 1) == callbacks.run_token(KEY, 1)


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer nope"}, {"Authorization": "token " + "0" * 64},
    {"Authorization": "Basic Zm9vOmJhcg=="},
])
async def test_missing_or_wrong_token_is_401(client: TestClient, engine: AsyncEngine,
                                             headers: dict[str, str]) -> None:
    run_id = await started_run(engine)
    response = await client.post(f"/internal/runs/{run_id}/events", json=event(0),
                                 headers=headers)
    assert response.status == 401
    response = await client.put(f"/internal/runs/{run_id}/result", json=RESULT, headers=headers)
    assert response.status == 401
    assert await stored_events(engine, run_id) == []
    assert (await get_run(engine, run_id)).result is None


async def test_a_token_of_one_run_is_refused_for_another(client: TestClient,
                                                         engine: AsyncEngine) -> None:
    first = await started_run(engine, number=1)
    second = await started_run(engine, number=2)
    response = await client.post(f"/internal/runs/{second}/events", json=event(0),
                                 headers=auth(first))
    assert response.status == 401
    response = await client.put(f"/internal/runs/{second}/result", json=RESULT,
                                headers=auth(first))
    assert response.status == 401
    assert (await get_run(engine, second)).state == "starting"


async def test_unknown_run_is_404_even_with_its_token(client: TestClient) -> None:
    response = await client.post("/internal/runs/999/events", json=event(0), headers=auth(999))
    assert response.status == 404


@pytest.mark.parametrize("body", [
    b"not json", b"", b"{}", b'{"seq": 0, "ts": 1, "kind": "shout", "data": {}}',
    b'{"seq": -1, "ts": 1, "kind": "log", "data": {}}',
    b'{"seq": 0, "ts": 1, "kind": "log", "data": {}, "extra": 1}',
    b'[{"seq": 0, "ts": 1, "kind": "log", "data": []}]',
])
async def test_malformed_events_are_400(client: TestClient, engine: AsyncEngine,
                                        body: bytes) -> None:
    run_id = await started_run(engine)
    response = await client.post(f"/internal/runs/{run_id}/events", data=body,
                                 headers={**auth(run_id), "Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["message"]
    assert await stored_events(engine, run_id) == []


@pytest.mark.parametrize("change", [
    {"status": "done"},
    {"changes": [{"path": "a", "mode": "100644", "content_b64": "%%% not base64"}]},
    {"changes": [{"path": "a", "mode": "040000", "content_b64": ""}]},
    {"changes": [{"path": "a", "deleted": False}]},
    {"unknown": 1},
])
async def test_malformed_results_are_400(client: TestClient, engine: AsyncEngine,
                                         change: dict[str, Any]) -> None:
    run_id = await started_run(engine)
    response = await client.put(f"/internal/runs/{run_id}/result", json={**RESULT, **change},
                                headers=auth(run_id))
    assert response.status == 400
    assert (await get_run(engine, run_id)).result is None


async def test_bodies_over_the_limit_are_413_with_or_without_a_length(
        client: TestClient, engine: AsyncEngine, hook: Hook) -> None:
    run_id = await started_run(engine)
    big = {**RESULT, "summary": "x" * RESULT_LIMIT}
    response = await client.put(f"/internal/runs/{run_id}/result", json=big,
                                headers=auth(run_id))
    assert response.status == 413

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to trust
        for _ in range(callbacks.MAX_EVENTS_BYTES // 65536 + 2):
            yield b" " * 65536

    response = await client.post(f"/internal/runs/{run_id}/events", data=chunks(),
                                 headers=auth(run_id))
    assert response.status == 413
    huge = event(0, blob="y" * (callbacks.MAX_EVENT_DATA_BYTES + 1))
    response = await client.post(f"/internal/runs/{run_id}/events", json=huge,
                                 headers=auth(run_id))
    assert response.status == 413
    assert await stored_events(engine, run_id) == [] and hook.calls == []
    assert (await get_run(engine, run_id)).state == "starting"


async def test_events_are_idempotent_by_seq_and_the_first_means_running(
        client: TestClient, engine: AsyncEngine) -> None:
    run_id = await started_run(engine)
    response = await client.post(f"/internal/runs/{run_id}/events",
                                 json=[event(0, "phase", phase="checkout"), event(1)],
                                 headers=auth(run_id))
    assert response.status == 200
    assert (await get_run(engine, run_id)).state == "running"
    # A retried upload, overlapping the first: seq 1 is kept as first stored.
    response = await client.post(f"/internal/runs/{run_id}/events",
                                 json=[event(1, text="retried"), event(2)],
                                 headers=auth(run_id))
    assert response.status == 200
    rows = await stored_events(engine, run_id)
    assert [(r.seq, r.kind, r.data) for r in rows] == [
        (0, "phase", {"phase": "checkout"}), (1, "log", {"n": 1}), (2, "log", {"n": 2})]
    assert rows[0].ts.year == 2024  # the sandbox's own timestamp
    assert await transitions(engine, run_id) == [
        (None, "queued"), ("queued", "starting"), ("starting", "running")]


async def test_events_of_a_finished_run_are_refused(client: TestClient,
                                                    engine: AsyncEngine) -> None:
    run_id = await started_run(engine)
    assert await transition(engine, run_id, RunState.CANCELLED, "cancel requested")
    response = await client.post(f"/internal/runs/{run_id}/events", json=event(0),
                                 headers=auth(run_id))
    assert response.status == 409
    assert await stored_events(engine, run_id) == []


async def test_result_is_stored_once(client: TestClient, engine: AsyncEngine,
                                     hook: Hook) -> None:
    run_id = await started_run(engine)
    url = f"/internal/runs/{run_id}/result"
    response = await client.put(url, json=RESULT, headers=auth(run_id))
    assert (response.status, await response.json()) == (200, {"stored": True})
    run = await get_run(engine, run_id)
    assert (run.state, run.summary, run.result["changes"][1]) == (
        "running", "Fixed it.", {"path": "old.txt", "deleted": True})
    # The same upload again (a retry after a lost answer) is a success that changes nothing.
    response = await client.put(url, json=RESULT, headers=auth(run_id))
    assert (response.status, (await response.json())["stored"]) == (200, False)
    response = await client.put(url, json={**RESULT, "summary": "Another story."},
                                headers=auth(run_id))
    assert response.status == 409
    assert (await get_run(engine, run_id)).summary == "Fixed it."
    assert [(i, r.status) for i, r in hook.calls] == [(run_id, "succeeded")]


async def test_result_of_a_run_not_started_is_retryable_then_taken(
        client: TestClient, engine: AsyncEngine) -> None:
    run_id = await queue_run(engine)
    response = await client.put(f"/internal/runs/{run_id}/result", json=RESULT,
                                headers=auth(run_id))
    # Not 409: the sandbox reads 409 as "already stored" and would drop its result.
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert (await get_run(engine, run_id)).result is None
    assert await transition(engine, run_id, RunState.STARTING, "scheduled")
    again = await client.put(f"/internal/runs/{run_id}/result", json=RESULT,
                             headers=auth(run_id))
    assert again.status == 200
    assert (await get_run(engine, run_id)).result is not None


async def test_a_failing_hook_does_not_fail_the_upload(
        client: TestClient, engine: AsyncEngine, hook: Hook,
        caplog: pytest.LogCaptureFixture) -> None:
    run_id = await started_run(engine)
    hook.fail = True
    with caplog.at_level(logging.ERROR, logger="bot.runs.callbacks"):
        response = await client.put(f"/internal/runs/{run_id}/result", json=RESULT,
                                    headers=auth(run_id))
    assert response.status == 200
    assert "the result hook failed" in caplog.text
    assert callbacks.run_token(KEY, run_id) not in caplog.text
    assert (await get_run(engine, run_id)).result is not None
