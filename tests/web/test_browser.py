"""The run page in a real Chromium: sign in through the fake GitHub, watch a run grow, lose
the connection and reload mid-run without a gap or a repeat, see it finish, be refused a run
of a repository you cannot read. Screenshots go to build/screenshots (AGENTBOT_SCREENSHOTS)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config.settings import Settings
from bot.store.tables import RunState
from bot.web.pages import NOT_FOUND_TEXT
from tests.fakes.github import FakeGitHub
from tests.web.browser import SCREENSHOTS, Browser, missing
from tests.web.harness import OPEN, SECRET, Pages, settings_for

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")

MESSAGES = "[...document.querySelectorAll('#transcript .msg .text')].map(e => e.textContent)"


@pytest.fixture
async def site(fake_github: FakeGitHub, tmp_path: Path,
               make_settings: Callable[..., Settings]) -> AsyncIterator[Pages]:
    Pages.arrange(fake_github)
    made = Pages(fake_github, settings_for(
        fake_github, make_settings, database_url=f"sqlite+aiosqlite:///{tmp_path / 'web.db'}"))
    await made.start(poll_seconds=0.1)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    launched = await Browser.launch()
    try:
        yield launched
    finally:
        await launched.close()


def message(seq: int, text: str) -> dict[str, Any]:
    return {"seq": seq, "kind": "message", "data": {"text": text}}


async def test_watching_a_run_live_in_a_browser(site: Pages, browser: Browser) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    run_id = await site.add_run(SECRET, title="Make the frobnicator frob once",
                                sender_login="mona")
    await site.post_events(run_id, [
        {"seq": 1, "kind": "phase", "data": {"phase": "checkout", "status": "succeeded"}},
        {"seq": 2, "kind": "phase", "data": {"phase": "setup", "status": "started"}},
        {"seq": 3, "kind": "log", "data": {"source": "setup", "stream": "stdout",
                                           "text": "pip install -e ."}},
        {"seq": 4, "kind": "log", "data": {"source": "setup", "stream": "stdout",
                                           "text": "Successfully installed widgets-0.1"}},
        {"seq": 5, "kind": "phase", "data": {"phase": "agent", "status": "started"}},
        message(6, "I will read the frobnicator first."),
    ])
    site.fake.oauth_login = "mona"

    # Signed out: the sign-in page; through the fake GitHub and back to the run.
    opened = await browser.send("goto", page="mona", url=f"{site.base}/runs/{run_id}")
    assert opened["status"] == 200
    assert "Sign in" in "".join(await browser.send("text", page="mona", selector="h1"))
    landed = await browser.send("click", page="mona", selector="a.btn.primary")
    assert landed == f"{site.base}/runs/{run_id}"
    await browser.send("waitText", page="mona", selector="#live", text="Live")
    assert await browser.send("evaluate", page="mona", expression=MESSAGES) == [
        "I will read the frobnicator first."]

    # The transcript grows as the sandbox reports.
    await site.post_events(run_id, [
        {"seq": 7, "kind": "todo", "data": {"items": [
            {"text": "Read frobnicator.py", "status": "completed"},
            {"text": "Make it frob once", "status": "in_progress"},
            {"text": "Run the tests", "status": "pending"}]}},
        {"seq": 8, "kind": "tool", "data": {"name": "Bash", "status": "started", "id": "t1",
                                            "input": "pytest -q tests/test_frob.py"}},
    ])
    await browser.send("waitText", page="mona", selector="#plan li.in_progress",
                       text="Make it frob once")
    await browser.send("waitText", page="mona", selector=".tool.running .tool-name", text="Bash")
    await site.post_events(run_id, [
        {"seq": 9, "kind": "tool", "data": {"name": "Bash", "status": "completed", "id": "t1",
                                            "exit_code": 0, "output": "\n".join(
                                                ["..........", "10 passed in 0.12s"] * 8)}},
        message(10, "The tests pass. Now the change itself."),
    ])
    await browser.send("waitText", page="mona", selector=".tool.ok .state", text="completed")
    await browser.send("waitText", page="mona", selector=".msg .text", text="Now the change")
    await browser.send("screenshot", page="mona", path=str(SCREENSHOTS / "run-live.png"))

    # The connection drops; events arrive meanwhile; the browser resumes from Last-Event-ID.
    assert site.run_pages.hub is not None
    site.run_pages.hub.disconnect()
    await site.post_events(run_id, [message(11, "Editing frobnicator.py."),
                                    message(12, "Done editing.")])
    await browser.send("waitText", page="mona", selector=".msg .text", text="Done editing.")
    await site.post_events(run_id, [message(13, "Running the tests again.")])
    await browser.send("waitText", page="mona", selector=".msg .text", text="again")
    expected = ["I will read the frobnicator first.", "The tests pass. Now the change itself.",
                "Editing frobnicator.py.", "Done editing.", "Running the tests again."]
    assert await browser.send("evaluate", page="mona", expression=MESSAGES) == expected

    # A reload mid-run: the page has everything so far, then follows on.
    assert await browser.send("reload", page="mona") == 200
    await site.post_events(run_id, [message(14, "All green.")])
    await browser.send("waitText", page="mona", selector=".msg .text", text="All green.")
    assert await browser.send("evaluate", page="mona", expression=MESSAGES) == [
        *expected, "All green."]
    assert await browser.send("evaluate", page="mona",
                              expression="document.querySelector('.logs .n').textContent") == "2"

    # The run ends: the header and the outcome come without a reload, and the stream stops.
    await site.finish(run_id, RunState.SUCCEEDED, publish_state="done", pr_number=7,
                      pr_url="https://github.com/octo-org/vault/pull/7", result={
                          "status": "succeeded", "summary": "Frobs once now.",
                          "commit_message": "Frob once", "stats": {}, "changes": [
                              {"path": "frob.py", "mode": "100644", "content_b64":
                               base64.b64encode(b"def frob():\n    return 1\n").decode()}]})
    await browser.send("waitText", page="mona", selector="#final .verdict",
                       text="The policy accepted the changes")
    await browser.send("waitText", page="mona", selector="#hdr .state", text="Succeeded")
    await browser.send("waitText", page="mona", selector="#live", text="Finished")
    await browser.send("screenshot", page="mona", path=str(SCREENSHOTS / "run-finished.png"),
                       full=True)

    # A finished run opened afresh is the same page, static; on a phone it fits the screen.
    await browser.send("goto", page="phone", url=f"{site.base}/runs/{run_id}",
                       viewport={"width": 390, "height": 844})
    await browser.send("click", page="phone", selector="a.btn.primary")
    assert await browser.send("evaluate", page="phone",
                              expression="document.body.dataset.live") == "0"
    assert await browser.send("evaluate", page="phone", expression=MESSAGES) == [
        *expected, "All green."]
    assert await browser.send(
        "evaluate", page="phone",
        expression="document.documentElement.scrollWidth <= window.innerWidth")
    await browser.send("screenshot", page="phone", path=str(SCREENSHOTS / "run-phone.png"))

    # Nothing broke the page's rules: no script error, no CSP refusal.
    assert await browser.send("errors") == []


async def test_a_run_of_a_repository_you_cannot_read_is_refused(
        site: Pages, browser: Browser) -> None:
    hidden = await site.add_run(SECRET)
    visible = await site.add_run(OPEN)
    site.fake.oauth_login = "octocat"  # not a collaborator of the private vault
    await browser.send("goto", page="octocat", url=f"{site.base}/runs/{hidden}")
    await browser.send("click", page="octocat", selector="a.btn.primary")
    assert NOT_FOUND_TEXT in "".join(await browser.send("text", page="octocat",
                                                        selector="main"))
    opened = await browser.send("goto", page="octocat", url=f"{site.base}/runs/{visible}")
    assert opened["status"] == 200
    await browser.send("goto", page="octocat", url=f"{site.base}/runs")
    listed = await browser.send("text", page="octocat", selector=".runs li")
    assert len(listed) == 1 and OPEN in listed[0] and "Running" in listed[0]
    # The list follows the states of its active runs.
    await site.finish(visible, RunState.CANCELLED)
    await browser.send("waitText", page="octocat", selector=".runs .state", text="Cancelled")
    # The refusal's own 404 is the only thing the console reports.
    assert await browser.send("errors") == [
        "Failed to load resource: the server responded with a status of 404 (Not Found)"]
