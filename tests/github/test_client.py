"""The bot's gidgethub client against the fake GitHub: rate limits, retries, metrics, ETags."""

from __future__ import annotations

import gidgethub
import pytest

from bot.config.settings import Settings
from bot.github.client import GitHubApp, RateLimited, RetryPolicy, create_session, path_template
from tests.fakes.github import FakeGitHub
from tests.fakes.github_clock import FakeClock

INSTALLATION = 51234567
REPO = "/repos/octo-org/hello-world"
GET_REPO = "GET /repos/{owner}/{repo}"
COMMENTS = "POST /repos/{owner}/{repo}/issues/{issue_number}/comments"


@pytest.fixture
def world(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_installation(INSTALLATION, "octo-org")
    fake_github.add_repo("octo-org", "hello-world")
    fake_github.add_issue("octo-org/hello-world", 1)
    return fake_github


@pytest.fixture
async def gh(world: FakeGitHub, github_app: GitHubApp) -> gidgethub.aiohttp.GitHubAPI:
    client = github_app.installation(INSTALLATION)
    await github_app.tokens.get(INSTALLATION)  # mint up front: tests count only their calls
    return client


@pytest.mark.parametrize("status", [403, 429])
async def test_retry_after_is_honoured(world: FakeGitHub, gh: gidgethub.abc.GitHubAPI,
                                       fake_clock: FakeClock, status: int) -> None:
    world.fail_next("GET", "/repos/{owner}/{repo}", status, headers={"retry-after": "1"})
    repo = await gh.getitem(REPO)
    assert repo["name"] == "hello-world"
    assert fake_clock.sleeps == [1.0]
    assert [r.status for r in world.calls(GET_REPO)] == [status, 200]


async def test_a_long_retry_after_is_deferred_not_slept(
        world: FakeGitHub, gh: gidgethub.abc.GitHubAPI, fake_clock: FakeClock) -> None:
    world.fail_next("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", 403,
                    headers={"retry-after": "120"})
    with pytest.raises(RateLimited) as caught:
        await gh.post(f"{REPO}/issues/1/comments", data={"body": "hello"})
    assert caught.value.reset_at.timestamp() == pytest.approx(fake_clock() + 120)
    assert caught.value.delay(fake_clock()) == pytest.approx(120)
    assert caught.value.status_code == 403
    assert fake_clock.sleeps == []
    assert len(world.calls(COMMENTS)) == 1
    assert world.comments("octo-org/hello-world", 1) == []


async def test_repeated_secondary_limits_end_in_rate_limited(
        world: FakeGitHub, gh: gidgethub.abc.GitHubAPI, fake_clock: FakeClock) -> None:
    world.fail_next("GET", "/repos/{owner}/{repo}", 429, headers={"retry-after": "2"}, times=5)
    with pytest.raises(RateLimited):
        await gh.getitem(REPO)
    assert fake_clock.sleeps == [2.0, 2.0]  # RetryPolicy.rate_limit_retries
    assert len(world.calls(GET_REPO)) == 3


async def test_primary_limit_raises_with_the_reset_time(
        world: FakeGitHub, gh: gidgethub.abc.GitHubAPI, fake_clock: FakeClock) -> None:
    reset = int(fake_clock()) + 1800
    world.fail_next("GET", "/repos/octo-org/*", 403,
                    headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    with pytest.raises(RateLimited) as caught:
        await gh.getitem(REPO)
    assert caught.value.reset_at.timestamp() == reset
    assert "API rate limit exceeded" in str(caught.value)
    assert fake_clock.sleeps == []  # never a blind retry
    assert len(world.calls(GET_REPO)) == 1


async def test_a_secondary_limit_without_guidance_waits_a_minute(
        world: FakeGitHub, gh: gidgethub.abc.GitHubAPI, fake_clock: FakeClock) -> None:
    world.fail_next("GET", "/repos/{owner}/{repo}", 403)  # GitHub's secondary-limit message
    with pytest.raises(RateLimited) as caught:
        await gh.getitem(REPO)
    assert caught.value.delay(fake_clock()) == pytest.approx(60)


async def test_a_permission_403_is_not_a_rate_limit(
        world: FakeGitHub, gh: gidgethub.abc.GitHubAPI, fake_clock: FakeClock) -> None:
    world.fail_next("GET", "/repos/{owner}/{repo}", 403,
                    body={"message": "Resource not accessible by integration",
                          "documentation_url": "https://docs.github.com/rest"})
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.getitem(REPO)
    assert not isinstance(caught.value, RateLimited)
    assert caught.value.status_code == 403
    assert len(world.calls(GET_REPO)) == 1


async def test_server_errors_are_retried_with_backoff(
        world: FakeGitHub, gh: gidgethub.abc.GitHubAPI, fake_clock: FakeClock) -> None:
    world.fail_next("GET", "/repos/{owner}/{repo}", 502, times=1)
    world.fail_next("GET", "/repos/{owner}/{repo}", 500, times=1)
    repo = await gh.getitem(REPO)
    assert repo["full_name"] == "octo-org/hello-world"
    assert [r.status for r in world.calls(GET_REPO)] == [502, 500, 200]
    assert fake_clock.sleeps == [0.5, 1.0]


async def test_server_errors_give_up_after_the_bounded_retries(
        world: FakeGitHub, gh: gidgethub.abc.GitHubAPI, fake_clock: FakeClock) -> None:
    world.fail_next("GET", "/repos/{owner}/{repo}", 503, times=10)
    with pytest.raises(gidgethub.GitHubBroken):
        await gh.getitem(REPO)
    assert len(world.calls(GET_REPO)) == 4
    assert fake_clock.sleeps == [0.5, 1.0, 2.0]


async def test_a_creating_post_is_not_retried_after_a_server_error(
        world: FakeGitHub, gh: gidgethub.abc.GitHubAPI, fake_clock: FakeClock) -> None:
    world.fail_next("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", 502)
    with pytest.raises(gidgethub.GitHubBroken):
        await gh.post(f"{REPO}/issues/1/comments", data={"body": "status"})
    assert len(world.calls(COMMENTS)) == 1
    assert fake_clock.sleeps == []


async def test_an_idempotent_post_is_retried(world: FakeGitHub, gh: gidgethub.abc.GitHubAPI,
                                             fake_clock: FakeClock) -> None:
    world.fail_next("POST", "/repos/{owner}/{repo}/issues/{issue_number}/reactions", 500)
    reaction = await gh.post(f"{REPO}/issues/1/reactions", data={"content": "eyes"})
    assert reaction["content"] == "eyes"
    assert world.reactions("issue", world.pull("octo-org/hello-world", 1).id) == ["eyes"]


async def test_every_response_reaches_the_metrics_hook(
        world: FakeGitHub, github_app: GitHubApp) -> None:
    seen: list[tuple[str, str, int, int | None]] = []
    fresh = GitHubApp(world.app_id, world.private_key_pem, github_app.session,
                      base_url=world.url, clock=github_app._clock, sleep=github_app._sleep,
                      on_response=lambda *args: seen.append(args))
    world.fail_next("GET", "/repos/{owner}/{repo}/issues/{issue_number}", 500)
    await fresh.installation(INSTALLATION).getitem(f"{REPO}/issues/1")
    assert seen[0][:3] == ("POST", "/app/installations/{n}/access_tokens", 201)
    assert seen[1][:3] == ("GET", "/repos/{owner}/{repo}/issues/{n}", 500)
    assert seen[2][:3] == ("GET", "/repos/{owner}/{repo}/issues/{n}", 200)
    assert isinstance(seen[2][3], int) and seen[2][3] < 5000


async def test_a_failing_metrics_hook_does_not_fail_the_call(
        world: FakeGitHub, github_app: GitHubApp, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("metrics down")

    app = GitHubApp(world.app_id, world.private_key_pem, github_app.session, base_url=world.url,
                    clock=github_app._clock, on_response=broken)
    assert (await app.identify())["slug"] == world.app_slug
    assert "response hook failed" in caplog.text


async def test_etag_cache_turns_repeats_into_304s(world: FakeGitHub,
                                                  github_app: GitHubApp) -> None:
    gh = github_app.installation(INSTALLATION, cache={})
    first = await gh.getitem(f"{REPO}/contents/README.md")
    second = await gh.getitem(f"{REPO}/contents/README.md")
    assert first == second
    calls = world.calls("GET /repos/{owner}/{repo}/contents/{path}")
    assert [r.status for r in calls] == [200, 304]
    assert calls[1].headers["if-none-match"].startswith('W/"')


async def test_from_settings_and_the_shared_session(world: FakeGitHub) -> None:
    settings = Settings.model_validate({
        "GITHUB_APP_ID": world.app_id, "GITHUB_PRIVATE_KEY": world.private_key_pem,
        "GITHUB_WEBHOOK_SECRET": "s", "GITHUB_API_URL": world.url + "/"})
    async with create_session() as session:
        app = GitHubApp.from_settings(settings, session)
        assert app.base_url == world.url and app.session is session
        assert (await app.identify())["id"] == world.app_id
    with pytest.raises(ValueError, match="GITHUB_APP_ID"):
        GitHubApp.from_settings(Settings.model_validate({}), session)


def test_retry_policy_defaults_are_bounded() -> None:
    policy = RetryPolicy()
    assert policy.max_wait <= 60 and policy.server_error_retries <= 5


@pytest.mark.parametrize(("url", "template"), [
    ("https://api.github.com/repos/o/r/issues/12/comments",
     "/repos/{owner}/{repo}/issues/{n}/comments"),
    ("https://api.github.com/repos/o/r/contents/.github/agentbot.yml?ref=main",
     "/repos/{owner}/{repo}/contents/{path}"),
    ("https://api.github.com/repos/o/r/git/ref/heads/agentbot/1-fix",
     "/repos/{owner}/{repo}/git/ref/{ref}"),
    ("https://api.github.com/repos/o/r/git/refs/heads/x", "/repos/{owner}/{repo}/git/refs/{ref}"),
    ("https://api.github.com/repos/o/r/git/commits/" + "a" * 40,
     "/repos/{owner}/{repo}/git/commits/{sha}"),
    ("https://api.github.com/repos/o/r/commits/main/check-runs",
     "/repos/{owner}/{repo}/commits/{ref}/check-runs"),
    ("https://api.github.com/repos/o/r/collaborators/alice/permission",
     "/repos/{owner}/{repo}/collaborators/{name}/permission"),
    ("https://api.github.com/app/installations/5/access_tokens",
     "/app/installations/{n}/access_tokens"),
    ("https://api.github.com/installation/token", "/installation/token"),
])
def test_path_template(url: str, template: str) -> None:
    assert path_template(url) == template
