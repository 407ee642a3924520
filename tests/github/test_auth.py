"""GitHub App auth against the fake GitHub: the JWT, cached and scoped installation tokens."""

from __future__ import annotations

import asyncio
import logging

import gidgethub
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.github.auth import JWT_BACKDATE, JWT_LIFETIME, AppAuth, Token
from bot.github.client import GitHubApp
from tests.fakes.github import FakeGitHub
from tests.fakes.github_clock import FakeClock

MINT = "POST /app/installations/{installation_id}/access_tokens"
INSTALLATION = 51234567


@pytest.fixture
def world(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_installation(INSTALLATION, "octo-org")
    fake_github.add_repo("octo-org", "hello-world", files={"README.md": b"hi\n"})
    fake_github.add_repo("octo-org", "other")
    fake_github.add_issue("octo-org/hello-world", 1)
    return fake_github


def test_jwt_claims_follow_githubs_rules() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    clock = FakeClock(1_700_000_000.5)
    auth = AppAuth(12345, pem, clock=clock)
    token = auth.jwt()
    claims = jwt.decode(token, key.public_key(), algorithms=["RS256"],
                        options={"verify_exp": False, "verify_iat": False})
    assert claims == {"iat": 1_700_000_000 - JWT_BACKDATE, "exp": 1_700_000_000 + JWT_LIFETIME,
                      "iss": "12345"}
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert claims["exp"] - 1_700_000_000 <= 600  # GitHub's ceiling
    clock.advance(6 * 60)
    assert auth.jwt() == token  # still three minutes to live: reused
    clock.advance(2 * 60)
    assert auth.jwt() != token  # one minute left: signed anew
    assert "PRIVATE" not in repr(auth) and "12345" in repr(auth)


async def test_the_fake_accepts_the_apps_jwt(world: FakeGitHub, github_app: GitHubApp) -> None:
    app = await github_app.identify()
    assert app["id"] == world.app_id
    assert github_app.app_login == "agentbot[bot]"
    assert world.requests[-1].status == 200
    assert "Authorization" not in world.requests[-1].headers  # recorded without the secret


async def test_a_jwt_signed_with_another_key_is_refused(
        world: FakeGitHub, github_app: GitHubApp, fake_clock: FakeClock) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()
    stranger = GitHubApp(world.app_id, pem, github_app.session, base_url=world.url,
                         clock=fake_clock, sleep=fake_clock.sleep)
    with pytest.raises(gidgethub.BadRequest) as caught:
        await stranger.app_client().getitem("/app")
    assert caught.value.status_code == 401
    # Refused once, re-signed and refused again: never more than one retry.
    assert [r.status for r in world.calls("GET /app")] == [401, 401]


async def test_installation_token_is_minted_once_and_reused(
        world: FakeGitHub, github_app: GitHubApp) -> None:
    gh = github_app.installation(INSTALLATION)
    issue = await gh.getitem("/repos/octo-org/hello-world/issues/1")
    repo = await github_app.installation(INSTALLATION).getitem("/repos/octo-org/hello-world")
    assert issue["number"] == 1 and repo["full_name"] == "octo-org/hello-world"
    assert len(world.calls(MINT)) == 1
    token = await github_app.tokens.get(INSTALLATION)
    issued = world.token_info(token.value)
    assert issued.installation_id == INSTALLATION
    assert issued.repository_ids is None  # the bot's own token: the whole installation


async def test_token_is_refreshed_five_minutes_before_it_expires(
        world: FakeGitHub, github_app: GitHubApp, fake_clock: FakeClock) -> None:
    gh = github_app.installation(INSTALLATION)
    await gh.getitem("/repos/octo-org/hello-world")
    first = await github_app.tokens.get(INSTALLATION)
    assert first.expires_in(fake_clock()) == pytest.approx(3600, abs=1)
    fake_clock.advance(54 * 60)  # six minutes left: keep it
    await gh.getitem("/repos/octo-org/hello-world")
    assert len(world.calls(MINT)) == 1
    fake_clock.advance(90)  # four and a half minutes left: replace it
    await gh.getitem("/repos/octo-org/hello-world")
    assert len(world.calls(MINT)) == 2
    second = await github_app.tokens.get(INSTALLATION)
    assert second.value != first.value
    assert second.expires_at > first.expires_at


async def test_concurrent_callers_share_one_mint(world: FakeGitHub, github_app: GitHubApp) -> None:
    tokens = await asyncio.gather(*(github_app.tokens.get(INSTALLATION) for _ in range(8)))
    assert len({t.value for t in tokens}) == 1
    gh = github_app.installation(INSTALLATION)
    github_app.tokens.invalidate(INSTALLATION)
    await asyncio.gather(*(gh.getitem("/repos/octo-org/hello-world") for _ in range(5)))
    assert len(world.calls(MINT)) == 2
    assert github_app.tokens.minted == 2


async def test_a_revoked_cached_token_is_replaced_once(
        world: FakeGitHub, github_app: GitHubApp) -> None:
    gh = github_app.installation(INSTALLATION)
    await gh.getitem("/repos/octo-org/hello-world")
    stale = await github_app.tokens.get(INSTALLATION)
    world.token_info(stale.value).revoked = True  # GitHub forgot it (revoked elsewhere)
    await gh.getitem("/repos/octo-org/hello-world/issues/1")
    statuses = [r.status for r in world.calls("GET /repos/{owner}/{repo}/issues/{issue_number}")]
    assert statuses == [401, 200]
    assert len(world.calls(MINT)) == 2


async def test_a_request_refused_twice_is_not_retried_forever(
        world: FakeGitHub, github_app: GitHubApp) -> None:
    world.fail_next("GET", "/repos/{owner}/{repo}", 401, times=5)
    with pytest.raises(gidgethub.BadRequest) as caught:
        await github_app.installation(INSTALLATION).getitem("/repos/octo-org/hello-world")
    assert caught.value.status_code == 401
    assert len(world.calls("GET /repos/{owner}/{repo}")) == 2


async def test_scoped_token_has_exactly_the_requested_scope(
        world: FakeGitHub, github_app: GitHubApp) -> None:
    token = await github_app.mint_scoped_token(INSTALLATION, ["octo-org/hello-world"],
                                               {"contents": "read"})
    issued = world.token_info(token.value)
    assert issued.repository_ids == frozenset({world.repo("octo-org/hello-world").id})
    assert issued.permissions == {"contents": "read", "metadata": "read"}
    assert world.calls(MINT)[-1].json == {"repositories": ["hello-world"],
                                          "permissions": {"contents": "read"}}
    assert token.repositories == ("octo-org/hello-world",)
    assert token.value.startswith("ghs_") and len(token.value) == 40

    plain = gidgethub.aiohttp.GitHubAPI(github_app.session, "test", base_url=world.url)
    readme = await plain.getitem("/repos/octo-org/hello-world/contents/README.md",
                                 oauth_token=token.value)
    assert readme["path"] == "README.md"
    with pytest.raises(gidgethub.BadRequest) as write:
        await plain.post("/repos/octo-org/hello-world/issues/1/comments",
                         data={"body": "no"}, oauth_token=token.value)
    assert write.value.status_code == 403
    with pytest.raises(gidgethub.BadRequest) as elsewhere:
        await plain.getitem("/repos/octo-org/other", oauth_token=token.value)
    assert elsewhere.value.status_code == 404
    # Scoped tokens are per run: never served from the cache, never shared.
    again = await github_app.mint_scoped_token(INSTALLATION, ["octo-org/hello-world"],
                                               {"contents": "read"})
    assert again.value != token.value


async def test_scoped_token_by_repository_id(world: FakeGitHub, github_app: GitHubApp) -> None:
    repo_id = world.repo("octo-org/other").id
    token = await github_app.mint_scoped_token(INSTALLATION, [repo_id], {"issues": "write"})
    assert world.calls(MINT)[-1].json == {"repository_ids": [repo_id],
                                          "permissions": {"issues": "write"}}
    assert world.token_info(token.value).repository_ids == frozenset({repo_id})


async def test_scoped_token_needs_a_scope(github_app: GitHubApp) -> None:
    with pytest.raises(ValueError):
        await github_app.mint_scoped_token(INSTALLATION, [], {"contents": "read"})
    with pytest.raises(ValueError):
        await github_app.mint_scoped_token(INSTALLATION, ["octo-org/hello-world"], {})


async def test_revoke_makes_the_token_useless(world: FakeGitHub, github_app: GitHubApp) -> None:
    token = await github_app.mint_scoped_token(INSTALLATION, ["hello-world"],
                                               {"contents": "read"})
    assert await github_app.revoke_token(token) is True
    assert world.token_info(token.value).revoked
    plain = gidgethub.aiohttp.GitHubAPI(github_app.session, "test", base_url=world.url)
    with pytest.raises(gidgethub.BadRequest) as caught:
        await plain.getitem("/repos/octo-org/hello-world", oauth_token=token.value)
    assert caught.value.status_code == 401
    assert await github_app.revoke_token(token) is False  # already gone: not an error
    assert [r.status for r in world.calls("DELETE /installation/token")] == [204, 401]


async def test_revoking_the_cached_token_evicts_it(world: FakeGitHub,
                                                   github_app: GitHubApp) -> None:
    cached = await github_app.tokens.get(INSTALLATION)
    await github_app.revoke_token(cached)
    assert (await github_app.tokens.get(INSTALLATION)).value != cached.value


async def test_tokens_never_reach_logs_or_reprs(
        world: FakeGitHub, github_app: GitHubApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = await github_app.mint_scoped_token(INSTALLATION, ["hello-world"],
                                               {"contents": "read"})
    cached = await github_app.tokens.get(INSTALLATION)
    await github_app.installation(INSTALLATION).getitem("/repos/octo-org/hello-world")
    await github_app.revoke_token(token)
    for secret in (token.value, cached.value):
        assert secret not in repr(token) + str(cached) + f"{token}"
        assert secret not in caplog.text
    assert "installation=51234567" in repr(token)
    assert "minted" in caplog.text and "revoked" in caplog.text


def test_token_repr_shows_the_scope_only() -> None:
    token = Token("ghs_" + "x" * 36, 0.0, 7, ("octo-org/a",), {"contents": "read"})
    assert repr(token) == ("<Token installation=7 expires_at=1970-01-01T00:00:00+00:00 "
                           "repositories=['octo-org/a'] permissions={'contents': 'read'}>")
    assert "x" * 36 not in str(token)
