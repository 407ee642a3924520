"""`/runs/{id}` over HTTP: who sees it, what it shows, its live stream resumed by Last-Event-ID."""

from __future__ import annotations

import asyncio
import base64
import re

from aiohttp import ClientResponse

from bot.store.tables import RunState
from bot.web.pages import CSP
from tests.web.harness import OPEN, OTHER, SECRET, Pages

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2  # a token-shaped secret an agent might print


async def read_sse(response: ClientResponse, until: str, seconds: float = 10.0
                   ) -> list[dict[str, str]]:
    """The stream's messages up to and including the first of event type `until`."""
    messages: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async with asyncio.timeout(seconds):
        while True:
            raw = await response.content.readline()
            if not raw:
                return messages
            line = raw.decode().rstrip("\n")
            if not line:
                if current:
                    messages.append(current)
                    if current.get("event") == until:
                        return messages
                current = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            current[name] = current[name] + "\n" + value if name in current else value


def ids(messages: list[dict[str, str]]) -> list[int]:
    return [int(m["id"]) for m in messages if m.get("event") == "ev"]


async def test_signed_out_gets_the_sign_in_page_for_any_run(pages: Pages) -> None:
    run_id = await pages.add_run(OPEN)
    assert pages.client is not None
    real = await pages.client.get(f"/runs/{run_id}")
    missing = await pages.client.get("/runs/999999")
    assert real.status == missing.status == 200
    assert "Sign in with GitHub" in await real.text()
    # Nothing tells the two apart but the way back after signing in.
    assert (await real.text()).replace(f"%2Fruns%2F{run_id}", "N") == \
        (await missing.text()).replace("%2Fruns%2F999999", "N")
    events = await pages.client.get(f"/runs/{run_id}/events")
    assert events.status == 401


async def test_a_run_of_a_repository_you_cannot_read_is_a_plain_404(pages: Pages) -> None:
    hidden = await pages.add_run(SECRET)
    foreign = await pages.add_run(OTHER)
    await pages.sign_in("octocat")  # not a collaborator of the private vault
    assert pages.client is not None
    texts = []
    for path in (f"/runs/{hidden}", f"/runs/{foreign}", "/runs/424242", "/runs/nope",
                 "/runs/99999999999999999999"):
        page = await pages.client.get(path)
        assert page.status == 404, path
        texts.append(await page.text())
    assert len(set(texts)) == 1  # the same page whether the run exists or not
    assert "Fix the frobnicator" not in texts[0]
    events = await pages.client.get(f"/runs/{hidden}/events")
    assert events.status == 404


async def test_a_collaborator_sees_the_private_run_and_access_is_cached(pages: Pages) -> None:
    run_id = await pages.add_run(SECRET)
    await pages.sign_in("mona")
    assert pages.client is not None
    before = len(pages.fake.calls("GET /repos/{owner}/{repo}"))
    for _ in range(3):
        assert (await pages.client.get(f"/runs/{run_id}")).status == 200
    asked = len(pages.fake.calls("GET /repos/{owner}/{repo}")) - before
    assert asked == 1  # GitHub asked once, then trusted for a few minutes


async def test_a_revoked_token_asks_to_sign_in_again(pages: Pages) -> None:
    run_id = await pages.add_run(OPEN)
    await pages.sign_in("octocat")
    for token in pages.fake.user_tokens.values():
        token.revoked = True
    assert pages.client is not None
    page = await pages.client.get(f"/runs/{run_id}")
    assert page.status == 401
    assert "Sign in with GitHub" in await page.text()


async def test_the_page_shows_the_transcript_redacted_folded_and_safe(pages: Pages) -> None:
    run_id = await pages.add_run(OPEN)
    await pages.post_events(run_id, [
        {"seq": 1, "kind": "phase", "data": {"phase": "setup", "status": "started"}},
        {"seq": 2, "kind": "log", "data": {"source": "setup", "stream": "stdout",
                                           "text": f"export TOKEN={TOKEN}"}},
        {"seq": 3, "kind": "todo", "data": {"items": [
            {"text": "Read the code", "status": "completed"},
            {"text": "Fix the bug", "status": "in_progress"}]}},
        {"seq": 4, "kind": "message", "data": {"text": "<script>alert(1)</script> I will fix it"}},
        {"seq": 5, "kind": "tool", "data": {"name": "Bash", "status": "started", "id": "t1",
                                            "input": "pytest -q"}},
        {"seq": 6, "kind": "tool", "data": {"name": "Bash", "status": "completed", "id": "t1",
                                            "output": "\n".join(f"line {i}" for i in range(200))}},
    ])
    await pages.sign_in("octocat")
    assert pages.client is not None
    page = await pages.client.get(f"/runs/{run_id}")
    text = await page.text()
    assert page.headers["Content-Security-Policy"] == CSP
    assert page.headers["Cache-Control"] == "no-store"
    assert TOKEN not in text and "[REDACTED:github_token]" in text
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text
    assert re.search(r'<li class="in_progress"><span class="mark">●</span>Fix the bug', text)
    assert "Output · 200 lines" in text  # folded behind a summary
    assert 'data-tool="t1"' in text and 'id="e-6"' in text
    # No inline script or style, nothing from elsewhere: the CSP allows none.
    assert not re.search(r"<script>|<style|style=|https?://(?!github)", text.split("<main>")[1]
                         .replace(pages.fake.url, ""))
    assert 'data-last="6"' in text and 'data-live="1"' in text


async def test_the_stream_resumes_after_last_event_id_without_gap_or_repeat(
        pages: Pages) -> None:
    run_id = await pages.add_run(OPEN)
    await pages.post_events(run_id, [
        {"seq": n, "kind": "message", "data": {"text": f"step {n}"}} for n in range(1, 6)])
    await pages.sign_in("octocat")
    assert pages.client is not None
    first = await pages.client.get(f"/runs/{run_id}/events?after=0")
    assert first.headers["Content-Type"] == "text/event-stream"
    seen = await read_sse(first, "run")
    assert ids(seen) == [1, 2, 3, 4, 5]
    await pages.post_events(run_id, [{"seq": 6, "kind": "message", "data": {"text": "six"}}])
    more = await read_sse(first, "ev")
    assert ids(more) == [6]
    first.close()  # the network drops
    # Events arrive while the viewer is away; the browser comes back with Last-Event-ID.
    await pages.post_events(run_id, [
        {"seq": n, "kind": "message", "data": {"text": f"step {n}"}} for n in (7, 8)])
    again = await pages.client.get(f"/runs/{run_id}/events?after=0",
                                   headers={"Last-Event-ID": "6"})
    resumed = await read_sse(again, "run")
    assert ids(resumed) == [7, 8]
    await pages.post_events(run_id, [{"seq": 9, "kind": "message", "data": {"text": "nine"}}])
    assert ids(await read_sse(again, "ev")) == [9]
    # The last events and the end, published in one tick: the events still come first.
    await pages.post_events(run_id, [
        {"seq": n, "kind": "message", "data": {"text": f"step {n}"}} for n in (10, 11, 12)])
    # The run ends: the header says so, the outcome comes, the stream closes.
    await pages.finish(run_id, RunState.SUCCEEDED, result={
        "status": "succeeded", "summary": "Fixed it.", "commit_message": "Fix", "stats": {},
        "changes": [{"path": "app.py", "mode": "100644",
                     "content_b64": base64.b64encode(b"print('hi')\n").decode()}]},
        publish_state="done", pr_url="https://github.com/octo-org/widgets/pull/9", pr_number=9)
    end = await read_sse(again, "end")
    assert ids(end) == [10, 11, 12]
    end = [m for m in end if m.get("event") != "ev"]
    assert [m["event"] for m in end] == ["run", "end"]
    assert "Succeeded" in end[0]["data"]
    assert "View pull request #9" in end[1]["data"]
    assert "-print(&#x27;hello&#x27;)" in end[1]["data"]  # the diff against the base
    assert "+print(&#x27;hi&#x27;)" in end[1]["data"]
    assert await again.content.read() == b""  # closed


async def test_a_bad_last_event_id_is_a_400(pages: Pages) -> None:
    run_id = await pages.add_run(OPEN)
    await pages.sign_in("octocat")
    assert pages.client is not None
    for value in ("x; DROP", "\u00b2", "9" * 11, "-1"):
        response = await pages.client.get(f"/runs/{run_id}/events",
                                          headers={"Last-Event-ID": value})
        assert response.status == 400, value
    response = await pages.client.get(f"/runs/{run_id}/events", params={"after": "\u00b3"})
    assert response.status == 400


async def test_a_finished_run_is_static_with_its_outcome(pages: Pages) -> None:
    run_id = await pages.add_run(OPEN)
    await pages.post_events(run_id, [{"seq": 1, "kind": "message", "data": {"text": "done"}}])
    await pages.finish(run_id, RunState.FAILED, error="the policy refused .github/workflows/x",
                       publish_state="refused", result={
                           "status": "succeeded", "summary": "", "commit_message": "",
                           "stats": {}, "changes": []})
    await pages.sign_in("octocat")
    assert pages.client is not None
    text = await (await pages.client.get(f"/runs/{run_id}")).text()
    assert 'data-live="0"' in text
    assert "The policy refused the changes: the policy refused .github/workflows/x" in text
    stream = await pages.client.get(f"/runs/{run_id}/events?after=1")
    messages = await read_sse(stream, "end")
    assert [m["event"] for m in messages if "event" in m] == ["run", "end"]


async def test_a_stream_ends_when_its_session_expires(pages: Pages) -> None:
    import time

    from bot.web.session import SESSION_COOKIE

    run_id = await pages.add_run(OPEN)
    token = pages.fake.issue_user_token("octocat")
    user = pages.fake.state.user("octocat")
    cookie = pages.run_pages.sealer.seal({"login": "octocat", "id": user.id, "token": token,
                                          "exp": time.time() + 1.0})
    assert pages.client is not None
    stream = await pages.client.get(f"/runs/{run_id}/events",
                                    cookies={SESSION_COOKIE: cookie})
    assert stream.status == 200
    await read_sse(stream, "run")
    await asyncio.sleep(1.1)
    await pages.post_events(run_id, [{"seq": 1, "kind": "message", "data": {"text": "late"}}])
    async with asyncio.timeout(5):  # the server closes the stream: the read ends
        await stream.content.read()
    assert stream.content.at_eof()
