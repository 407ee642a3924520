"""Sign-in through the fake GitHub's OAuth pages: the session cookie, its state, its failures."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http.cookies import SimpleCookie

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.config.settings import Settings
from bot.web.oauth import DENIED, EXPIRED
from bot.web.session import SESSION_COOKIE, STATE_COOKIE
from tests.fakes.github import FakeGitHub
from tests.web.harness import OPEN, Pages, settings_for


def cookie(response: object, name: str) -> object:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):  # type: ignore[attr-defined]
        jar.load(header)
    return jar.get(name)


async def test_sign_in_sets_a_sealed_session_and_goes_back(
        pages: Pages, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    run_id = await pages.add_run(OPEN)
    done = await pages.sign_in("octocat", f"/runs/{run_id}")
    assert done.status == 303
    assert done.headers["Location"] == f"/runs/{run_id}"
    session = cookie(done, SESSION_COOKIE)
    assert session is not None
    assert session["httponly"] and session["samesite"] == "Lax"  # type: ignore[index]
    assert not session["secure"]  # type: ignore[index]  # http:// public URL
    assert 0 < int(session["max-age"]) <= 8 * 3600  # type: ignore[index]
    token = next(iter(pages.fake.user_tokens))
    assert token not in session.value  # type: ignore[attr-defined]  # sealed, not readable
    assert token not in done.headers["Location"]
    # The state cookie is spent.
    assert cookie(done, STATE_COOKIE).value == ""  # type: ignore[union-attr]
    assert pages.client is not None
    page = await pages.client.get(f"/runs/{run_id}")
    assert page.status == 200
    assert "Fix the frobnicator" in await page.text()
    assert "@octocat" in await page.text()
    # The token exchange sent the code and the registered callback, never in our logs.
    exchange = pages.fake.oauth_exchanges[-1]
    assert exchange["redirect_uri"] == f"{pages.base}/login/callback"
    # Neither the person's token nor the client secret reaches a log line.
    assert token not in caplog.text and pages.fake.oauth_client_secret not in caplog.text
    assert "signed in" in caplog.text


async def test_a_denied_authorization_signs_nobody_in(pages: Pages) -> None:
    pages.fake.oauth_denies = True
    done = await pages.sign_in("octocat")
    assert done.status == 400
    assert DENIED in await done.text()
    assert cookie(done, SESSION_COOKIE) is None
    assert not pages.fake.user_tokens


async def test_an_expired_code_is_refused_with_a_way_back(pages: Pages) -> None:
    assert pages.client is not None
    first = await pages.client.get("/login", allow_redirects=False)
    at_github = await pages.client.session.get(first.headers["Location"],
                                               allow_redirects=False)
    pages.fake.expire_oauth_codes()
    done = await pages.client.session.get(at_github.headers["Location"],
                                          allow_redirects=False)
    assert done.status == 400
    text = await done.text()
    assert EXPIRED in text and "Sign in with GitHub" in text
    assert cookie(done, SESSION_COOKIE) is None


async def test_a_used_code_does_not_sign_in_twice(pages: Pages) -> None:
    assert pages.client is not None
    first = await pages.client.get("/login", allow_redirects=False)
    at_github = await pages.client.session.get(first.headers["Location"],
                                               allow_redirects=False)
    back = at_github.headers["Location"]
    assert (await pages.client.session.get(back, allow_redirects=False)).status == 303
    again = await pages.client.session.get(back, allow_redirects=False)
    assert again.status == 400  # the state cookie is spent, and so is the code


async def test_a_callback_this_browser_did_not_start_is_refused(
        pages: Pages, fake_github: FakeGitHub) -> None:
    """CSRF: an attacker's own code and state, sent to a victim's browser, signs nobody in."""
    assert pages.client is not None
    attacker = TestClient(TestServer(web.Application()))  # another browser: its own cookies
    await attacker.start_server()
    try:
        first = await attacker.session.get(f"{pages.base}/login", allow_redirects=False)
        at_github = await attacker.session.get(first.headers["Location"],
                                               allow_redirects=False)
        link = at_github.headers["Location"]
    finally:
        await attacker.close()
    victim = await pages.client.session.get(link, allow_redirects=False)
    assert victim.status == 400
    assert cookie(victim, SESSION_COOKIE) is None
    assert not fake_github.oauth_exchanges  # nothing was traded


async def test_next_is_a_local_path_only(pages: Pages) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        done = await pages.sign_in("octocat", target)
        assert done.headers["Location"] == "/runs"


async def test_sign_out_clears_the_session(pages: Pages) -> None:
    await pages.sign_in("octocat")
    assert pages.client is not None
    out = await pages.client.post("/logout", allow_redirects=False)
    assert out.status == 303
    page = await pages.client.get("/runs")
    assert "Sign in with GitHub" in await page.text()


async def test_sign_out_from_another_site_is_refused(pages: Pages) -> None:
    await pages.sign_in("octocat")
    assert pages.client is not None
    out = await pages.client.post("/logout", headers={"Origin": "https://evil.example"},
                                  allow_redirects=False)
    assert out.status == 403


async def test_secure_cookies_behind_an_https_public_url(
        fake_github: FakeGitHub, make_settings: Callable[..., Settings]) -> None:
    Pages.arrange(fake_github)
    settings = settings_for(fake_github, make_settings,
                            public_url="https://agentbot.example.com")
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        response = await client.get("/login", allow_redirects=False)
        state = cookie(response, STATE_COOKIE)
        assert state is not None and state["secure"]  # type: ignore[index]
        assert "redirect_uri=https%3A%2F%2Fagentbot.example.com%2Flogin%2Fcallback" in \
            response.headers["Location"]
    finally:
        await client.close()


async def test_sign_in_is_off_without_the_oauth_client(
        fake_github: FakeGitHub, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(github_api_url=fake_github.url)
    assert not settings.sign_in
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        for path in ("/runs", "/runs/1", "/login", "/login/callback", "/runs/1/events"):
            assert (await client.get(path, allow_redirects=False)).status == 404, path
    finally:
        await client.close()
