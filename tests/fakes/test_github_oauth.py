"""The fake GitHub's OAuth web flow and user tokens behave as GitHub documents them."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.github_oauth import BAD_CLIENT, BAD_CODE, DENIED, TOKEN_SECONDS

CALLBACK = "https://agentbot.example.com/login/callback"


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as session:
        yield session


async def authorize(http: aiohttp.ClientSession, fake: FakeGitHub, **params: str) -> dict:
    query = {"client_id": fake.oauth_client_id, "state": "s1", **params}
    async with http.get(f"{fake.url}/login/oauth/authorize", params=query,
                        allow_redirects=False) as response:
        assert response.status == 302, await response.text()
        location = urlsplit(response.headers["Location"])
        return {"at": f"{location.scheme}://{location.netloc}{location.path}",
                **{k: v[0] for k, v in parse_qs(location.query).items()}}


async def exchange(http: aiohttp.ClientSession, fake: FakeGitHub, code: str,
                   accept_json: bool = True, **fields: str) -> dict | str:
    form = {"client_id": fake.oauth_client_id, "client_secret": fake.oauth_client_secret,
            "code": code, **fields}
    headers = {"Accept": "application/json"} if accept_json else {}
    async with http.post(f"{fake.url}/login/oauth/access_token", data=form,
                         headers=headers) as response:
        assert response.status == 200  # GitHub answers errors 200 too
        return await response.json() if accept_json else await response.text()


async def test_approval_returns_a_code_for_an_expiring_user_token(
        fake_github: FakeGitHub, http: aiohttp.ClientSession) -> None:
    fake_github.oauth_callback_urls = [CALLBACK]
    back = await authorize(http, fake_github, redirect_uri=CALLBACK)
    assert back["at"] == CALLBACK and back["state"] == "s1"
    token = await exchange(http, fake_github, back["code"], redirect_uri=CALLBACK)
    assert isinstance(token, dict)
    assert token["access_token"].startswith("ghu_") and token["token_type"] == "bearer"
    assert token["expires_in"] == TOKEN_SECONDS and token["refresh_token"].startswith("ghr_")
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    async with http.get(f"{fake_github.url}/user", headers=headers) as response:
        assert response.status == 200
        assert (await response.json())["login"] == "octocat"
    # The code was used once.
    again = await exchange(http, fake_github, back["code"])
    assert again == {"error": "bad_verification_code", "error_description": BAD_CODE,
                     "error_uri": again["error_uri"]}  # type: ignore[index]


async def test_denial_goes_back_with_access_denied(
        fake_github: FakeGitHub, http: aiohttp.ClientSession) -> None:
    fake_github.oauth_denies = True
    back = await authorize(http, fake_github, redirect_uri=CALLBACK)
    assert back["error"] == "access_denied" and back["error_description"] == DENIED
    assert back["state"] == "s1" and "code" not in back


async def test_a_foreign_redirect_uri_goes_to_the_registered_one_with_an_error(
        fake_github: FakeGitHub, http: aiohttp.ClientSession) -> None:
    fake_github.oauth_callback_urls = [CALLBACK]
    back = await authorize(http, fake_github, redirect_uri="https://evil.example/cb")
    assert back["at"] == CALLBACK and back["error"] == "redirect_uri_mismatch"


async def test_an_unknown_client_is_a_404_page(fake_github: FakeGitHub,
                                               http: aiohttp.ClientSession) -> None:
    async with http.get(f"{fake_github.url}/login/oauth/authorize",
                        params={"client_id": "Iv1.nope"}, allow_redirects=False) as response:
        assert response.status == 404


async def test_token_errors_are_200_with_an_error_field(
        fake_github: FakeGitHub, http: aiohttp.ClientSession) -> None:
    back = await authorize(http, fake_github, redirect_uri=CALLBACK)
    wrong_secret = await exchange(http, fake_github, back["code"], client_secret="nope")
    assert wrong_secret["error"] == "incorrect_client_credentials"  # type: ignore[index]
    assert wrong_secret["error_description"] == BAD_CLIENT  # type: ignore[index]
    fake_github.expire_oauth_codes()
    expired = await exchange(http, fake_github, back["code"], accept_json=False)
    assert isinstance(expired, str)
    assert parse_qs(expired)["error"] == ["bad_verification_code"]  # form-encoded by default


async def test_a_user_token_sees_the_repositories_its_person_can_read(
        fake_github: FakeGitHub, http: aiohttp.ClientSession) -> None:
    fake_github.add_installation(7, "octo-org")
    fake_github.add_repo("octo-org", "widgets")
    fake_github.add_repo("octo-org", "vault", private=True)
    fake_github.add_collaborator("octo-org/vault", "mona", "write")
    fake_github.add_repo("elsewhere", "hidden", private=True)
    fake_github.add_collaborator("elsewhere/hidden", "mona", "admin")  # App not installed

    async def status(login: str, repo: str) -> tuple[int, dict]:
        token = fake_github.issue_user_token(login)
        async with http.get(f"{fake_github.url}/repos/{repo}",
                            headers={"Authorization": f"token {token}"}) as response:
            return response.status, await response.json()

    assert (await status("octocat", "octo-org/widgets"))[0] == 200
    assert (await status("octocat", "octo-org/vault"))[0] == 404
    code, body = await status("mona", "octo-org/vault")
    assert code == 200 and body["permissions"]["push"] and not body["permissions"]["admin"]
    assert (await status("mona", "elsewhere/hidden"))[0] == 404
    token = fake_github.issue_user_token("mona")
    fake_github.user_tokens[token].revoked = True
    async with http.get(f"{fake_github.url}/user",
                        headers={"Authorization": f"token {token}"}) as response:
        assert response.status == 401
