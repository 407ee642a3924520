"""End to end with sign-in on: a labelled issue's run links its page from the check run's
Details and from the status comment, and the page shows that run to its maintainer."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config.settings import Settings
from bot.web.routes import PAGES_KEY
from bot.web.session import SESSION_COOKIE
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.flow.harness import Flow

pytestmark = pytest.mark.slow

PUBLIC_URL = "https://agentbot.example.com"


async def test_the_check_run_and_the_comment_link_the_run_page(
        fake_github: FakeGitHub, tmp_path: Path,
        make_settings: Callable[..., Settings]) -> None:
    flow = await Flow.create(fake_github, tmp_path, make_settings,
                             f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}",
                             public_url=PUBLIC_URL,
                             github_client_id=fake_github.oauth_client_id,
                             github_client_secret=fake_github.oauth_client_secret)
    await flow.start()
    try:
        flow.plan(write={"src/greet.py": "print('hi')\n"}, summary="Added a greeting.")
        await flow.deliver("issues", p.issues_labeled())
        run = await flow.settled((await flow.wait_for_run()).id)
        assert run.state == "succeeded"
        page = f"{PUBLIC_URL}/runs/{run.id}"
        [check] = flow.check_runs()
        assert check.details_url == page
        [status] = flow.status_comments()
        assert f"[Run page]({page})" in status.body

        # The maintainer who labelled it opens the page. The session cookie is Secure behind
        # the https public URL, which this http test client would not send back: it is made
        # here as the callback makes it.
        client = flow.client
        assert client is not None
        pages = client.server.app[PAGES_KEY]  # type: ignore[union-attr]
        user = fake_github.state.user("octocat")
        cookie = pages.sealer.seal({"login": "octocat", "id": user.id,
                                    "token": fake_github.issue_user_token("octocat"),
                                    "exp": time.time() + 600})
        client.session.cookie_jar.update_cookies({SESSION_COOKIE: cookie},
                                                 client.make_url("/"))
        shown = await client.get(f"/runs/{run.id}")
        text = await shown.text()
        assert shown.status == 200 and "Added a greeting." in text
        assert "src/greet.py" in text and "+print(&#x27;hi&#x27;)" in text
    finally:
        await flow.close()
