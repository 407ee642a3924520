"""The setup page and its manifest flow over real HTTP, against the fake GitHub."""

from __future__ import annotations

import json
import logging
import stat
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.config.settings import Settings
from bot.setup import page
from bot.setup.flow import SetupError, new_app_url, web_url
from bot.setup.page import STATE_COOKIE, SetupFlow
from tests.fakes.github import FakeGitHub

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_URL = "https://agentbot.example.com"


class Forms(HTMLParser):
    """The forms of a page: action, method and their inputs' values; and the links."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.links: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.forms.append({"action": values.get("action"), "method": values.get("method"),
                               "inputs": {}})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"][values.get("name")] = values.get("value")
        elif tag == "a":
            self.links.append(values.get("href") or "")


def manifest_form(page: str) -> dict[str, Any]:
    forms = [f for f in Forms(page).forms if "manifest" in f["inputs"]]
    assert len(forms) == 1, page
    return forms[0]


@pytest.fixture
def flow(fake_github: FakeGitHub, tmp_path: Path) -> SetupFlow:
    # The fake serves the API; its web pages (the App's html_url) live at the same address.
    fake_github.html_url = fake_github.url
    return SetupFlow(api_url=fake_github.url, env_path=tmp_path / ".env",
                     public_url=PUBLIC_URL)


@pytest.fixture
async def client(aiohttp_client: Any, flow: SetupFlow) -> TestClient:
    app = web.Application()
    page.add_routes(app, flow)
    return await aiohttp_client(app)


async def open_page(client: TestClient, query: str = "") -> tuple[dict[str, Any], str]:
    """GET / and return the manifest form and the state cookie it set."""
    response = await client.get("/" + query)
    assert response.status == 200
    assert response.headers["Referrer-Policy"] == "no-referrer"
    cookie = response.cookies[STATE_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    return manifest_form(await response.text()), cookie.value


async def test_page_posts_the_filled_in_manifest_for_a_user_account(
        client: TestClient, fake_github: FakeGitHub) -> None:
    form, state = await open_page(client)
    assert form["method"] == "post"
    assert form["action"] == f"{fake_github.url}/settings/apps/new?state={state}"
    manifest = json.loads(form["inputs"]["manifest"])
    on_disk = yaml.safe_load((ROOT / "app-manifest.yml").read_text())
    assert manifest["hook_attributes"] == {**on_disk["hook_attributes"],
                                           "url": f"{PUBLIC_URL}/webhook"}
    # The browser opened the page at the test server's address: GitHub sends it back there.
    assert manifest["redirect_url"] == str(client.make_url("/setup/callback"))
    for key in ("name", "default_events", "default_permissions", "public"):
        assert manifest[key] == on_disk[key]


async def test_organisation_typed_in_the_form_targets_its_new_app_page(
        client: TestClient, fake_github: FakeGitHub) -> None:
    _, state = await open_page(client)
    form, again = await open_page(client, "?org=octo-org")
    assert again == state  # an open tab's state stays valid when the page is shown again
    assert form["action"] == (f"{fake_github.url}/organizations/octo-org/settings/apps/new"
                              f"?state={state}")
    response = await client.get("/?org=not an org!")
    assert response.status == 400
    assert "not a GitHub organisation name" in await response.text()


@pytest.mark.parametrize(("api_url", "expected"), [
    ("https://api.github.com", "https://github.com"),
    ("https://ghe.example.com/api/v3", "https://ghe.example.com"),
    ("https://ghe.example.com/api/v3/", "https://ghe.example.com"),
    ("https://api.octo.ghe.com", "https://octo.ghe.com"),
    ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
])
def test_web_url_derives_from_the_api_url(api_url: str, expected: str) -> None:
    assert web_url(api_url) == expected
    assert new_app_url(api_url, "s1") == f"{expected}/settings/apps/new?state=s1"
    assert new_app_url(api_url, "s1", "octo-org") == \
        f"{expected}/organizations/octo-org/settings/apps/new?state=s1"
    with pytest.raises(SetupError):
        new_app_url(api_url, "s1", "-bad-")


async def test_strangers_loading_the_page_do_not_push_out_the_operators_state(
        client: TestClient, fake_github: FakeGitHub, flow: SetupFlow) -> None:
    fake_github.add_manifest_code("code-1")
    _, state = await open_page(client)
    client.session.cookie_jar.clear()
    for _ in range(500):  # other browsers, each getting a state of its own
        async with client.get("/") as response:
            assert response.status == 200
        client.session.cookie_jar.clear()
    response = await client.get("/setup/callback", params={"code": "code-1", "state": state},
                                cookies={STATE_COOKIE: state})
    assert response.status == 200
    assert flow.env_path.exists()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "localhost:1",
                                  "127.0.0.1.evil.example"])
async def test_a_strangers_host_header_never_reaches_the_manifest(
        client: TestClient, host: str) -> None:
    assert client.server.port is not None
    response = await client.get("/", headers={"Host": host})
    assert response.status == 200
    text = await response.text()
    assert "evil.example" not in text and "localhost:1/" not in text
    manifest = json.loads(manifest_form(text)["inputs"]["manifest"])
    assert manifest["redirect_url"] == f"http://127.0.0.1:{client.server.port}/setup/callback"
    # The operator's own loopback name is kept (the state cookie lives there).
    response = await client.get("/", headers={"Host": f"localhost:{client.server.port}"})
    manifest = json.loads(manifest_form(await response.text())["inputs"]["manifest"])
    assert manifest["redirect_url"] == f"http://localhost:{client.server.port}/setup/callback"


@pytest.mark.parametrize("case", ["missing", "unknown", "no_cookie", "other_cookie", "reused",
                                  "forged", "expired"])
async def test_callback_without_this_browsers_state_is_refused_with_400(
        client: TestClient, fake_github: FakeGitHub, flow: SetupFlow, case: str) -> None:
    fake_github.add_manifest_code("code-1")
    fake_github.add_manifest_code("code-2")
    _, state = await open_page(client)
    query: dict[str, str] = {"code": "code-1", "state": state}
    cookies = {STATE_COOKIE: state}
    if case == "missing":
        del query["state"]
    elif case == "unknown":
        query["state"] = cookies[STATE_COOKIE] = "made-up-state"
    elif case == "forged":
        nonce, expires, mac = state.split(".")
        query["state"] = cookies[STATE_COOKIE] = f"{nonce}.{int(expires) + 9999}.{mac}"
    elif case == "expired":
        flow.states._ttl = -1  # noqa: SLF001 - a state issued already run out
        query["state"] = cookies[STATE_COOKIE] = flow.states.issue()
    elif case == "no_cookie":
        cookies = {}
    elif case == "other_cookie":
        cookies = {STATE_COOKIE: "another-browser"}
    elif case == "reused":
        first = await client.get("/setup/callback", params=query, cookies=cookies)
        assert first.status == 200
        flow.env_path.unlink()
        query["code"] = "code-2"
    client.session.cookie_jar.clear()
    response = await client.get("/setup/callback", params=query, cookies=cookies)
    assert response.status == 400
    assert page.BAD_STATE in await response.text()
    assert not flow.env_path.exists()
    assert not flow.completed.is_set() or case == "reused"


async def test_code_exchange_writes_env_0600_that_settings_load_back(
        client: TestClient, fake_github: FakeGitHub, flow: SetupFlow,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    flow.env_path.write_text("AGENTBOT_LOG_LEVEL=debug\n# the operator's note\n")
    fake_github.add_manifest_code("a1b2c3")
    _, state = await open_page(client)
    response = await client.get("/setup/callback", params={"code": "a1b2c3", "state": state})
    page = await response.text()
    assert response.status == 200, page
    assert "is created" in page
    assert f"{fake_github.url}/apps/{fake_github.app_slug}/installations/new" in Forms(page).links
    assert flow.completed.is_set() and flow.credentials is not None

    assert [c.operation for c in fake_github.requests] == [
        "POST /app-manifests/{code}/conversions"]
    mode = stat.S_IMODE(flow.env_path.stat().st_mode)
    assert mode == 0o600, oct(mode)
    text = flow.env_path.read_text()
    assert text.startswith("AGENTBOT_LOG_LEVEL=debug\n# the operator's note\n")
    settings = Settings(_env_file=flow.env_path)  # type: ignore[call-arg]
    assert settings.github_app_id == fake_github.app_id
    assert settings.private_key_pem() == fake_github.private_key_pem
    assert settings.github_webhook_secret == fake_github.manifest_webhook_secret
    assert settings.log_level == "debug"
    assert settings.app_problems() == []
    # The App's OAuth client comes along: sign-in for the run pages is on.
    assert settings.github_client_id == fake_github.oauth_client_id
    assert settings.github_client_secret == fake_github.oauth_client_secret
    assert settings.sign_in
    for secret in (fake_github.manifest_webhook_secret, "BEGIN RSA PRIVATE KEY",
                   fake_github.oauth_client_secret):
        assert secret not in caplog.text and secret not in page
    # The page works once: the state is spent.
    again = await client.get("/setup/callback", params={"code": "a1b2c3", "state": state})
    assert again.status == 400


async def test_invalid_code_gives_an_error_page_and_writes_nothing(
        client: TestClient, flow: SetupFlow) -> None:
    _, state = await open_page(client)
    response = await client.get("/setup/callback", params={"code": "expired", "state": state})
    assert response.status == 400
    page = await response.text()
    assert "GitHub refused the code (404)" in page
    assert '<a href="/">' in page  # start again
    assert not flow.env_path.exists() and not flow.completed.is_set()


async def test_github_failing_to_convert_is_a_502_page(
        client: TestClient, fake_github: FakeGitHub, flow: SetupFlow) -> None:
    fake_github.add_manifest_code("good-code")
    fake_github.fail_next("POST", "/app-manifests/{code}/conversions", 500)
    _, state = await open_page(client)
    response = await client.get("/setup/callback", params={"code": "good-code", "state": state})
    assert response.status == 502
    assert "GitHub failed to convert the code (500)" in await response.text()
    assert not flow.env_path.exists()


async def test_serve_in_setup_mode_serves_the_page_at_root(
        aiohttp_client: Any, fake_github: FakeGitHub, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # .env goes to the working directory, as Settings reads it
    settings = Settings(_env_file=None, GITHUB_API_URL=fake_github.url)  # type: ignore[call-arg]
    assert settings.setup_mode
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/")
    page = await response.text()
    assert response.status == 200
    manifest = json.loads(manifest_form(page)["inputs"]["manifest"])
    # No AGENTBOT_PUBLIC_URL: the address the page was opened at, and the page says so.
    assert manifest["hook_attributes"]["url"] == str(client.make_url("/webhook"))
    assert "AGENTBOT_PUBLIC_URL is not set" in page
    assert (await client.post("/webhook", json={})).status == 503
