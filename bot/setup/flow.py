"""The App manifest flow: the manifest to post, the code exchange, and the `.env` it writes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import gidgethub
import gidgethub.aiohttp
import yaml

from bot.github.client import USER_AGENT
from bot.redact import register_secret

log = logging.getLogger(__name__)

MANIFEST_NAME = "app-manifest.yml"
ENV_PATH = Path(".env")  # where Settings reads it: the working directory
WEBHOOK_PATH = "/webhook"
CALLBACK_PATH = "/setup/callback"
# GitHub's manifest codes last an hour; a page left open longer has to be reloaded.
STATE_TTL_SECONDS = 3600
# Used states remembered (each for its hour). Using one takes a state this process signed and
# a matching cookie; past this many, the oldest are forgotten (a code from GitHub is needed too).
MAX_USED_STATES = 10_000
# GitHub logins: alphanumerics and single hyphens, not at either end, at most 39 characters.
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
ENV_KEYS = ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_PRIVATE_KEY_PATH",
            "GITHUB_WEBHOOK_SECRET", "GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET")
# Where GitHub sends a person back after "Sign in with GitHub" (bot/web/routes.py serves it).
SIGN_IN_CALLBACK_PATH = "/login/callback"


class SetupError(Exception):
    """The flow cannot go on; the message is safe to show the operator, `status` to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AppCredentials:
    """What agentbot keeps of GitHub's manifest conversion (repr leaves the secrets out)."""

    app_id: int
    slug: str
    html_url: str
    private_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    # The App's OAuth client, for signing people in to the run pages.
    client_id: str = ""
    client_secret: str = field(default="", repr=False)

    @property
    def install_url(self) -> str:
        """The page where an account installs the App on its repositories."""
        return f"{self.html_url.rstrip('/')}/installations/new"


def find_manifest(explicit: Path | None = None) -> Path:
    """app-manifest.yml: the given path, else the working directory, the source tree or the
    installation prefix (the bot's image copies it there)."""
    if explicit is not None:
        if not explicit.is_file():
            raise SetupError(f"{explicit} does not exist", 500)
        return explicit
    candidates = (Path.cwd() / MANIFEST_NAME,
                  Path(__file__).resolve().parents[2] / MANIFEST_NAME,
                  Path(sys.prefix) / MANIFEST_NAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SetupError(f"{MANIFEST_NAME} not found in the working directory or beside agentbot",
                     500)


def load_manifest(path: Path, public_url: str, callback_url: str) -> dict[str, Any]:
    """The manifest with its webhook URL (public_url + /webhook) and redirect URL filled in."""
    try:
        manifest = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SetupError(f"{path} could not be read: {exc}", 500) from exc
    if not isinstance(manifest, dict):
        raise SetupError(f"{path} is not a mapping", 500)
    manifest["hook_attributes"] = {**manifest.get("hook_attributes", {}),
                                   "url": public_url.rstrip("/") + WEBHOOK_PATH}
    manifest["redirect_url"] = callback_url
    manifest["callback_urls"] = [public_url.rstrip("/") + SIGN_IN_CALLBACK_PATH]
    return manifest


def check_public_url(url: str) -> str:
    """The URL without a trailing slash, or SetupError when GitHub could never deliver to it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SetupError(f"{url!r} is not an http(s) URL (set AGENTBOT_PUBLIC_URL)")
    return url.rstrip("/")


def web_url(api_url: str) -> str:
    """GitHub's web address for an API URL: github.com, a GHES host, or the URL itself.

    `https://api.github.com` and `https://api.<tenant>.ghe.com` drop the `api.`;
    GitHub Enterprise Server's `https://<host>/api/v3` drops the path. Anything else (a test
    double serving both) is its own web address.
    """
    parts = urlsplit(api_url.rstrip("/"))
    host = parts.netloc
    if parts.path.rstrip("/") == "/api/v3":
        return f"{parts.scheme}://{host}"
    if host.startswith("api.") and parts.path in ("", "/"):
        return f"{parts.scheme}://{host.removeprefix('api.')}"
    return api_url.rstrip("/")


def check_org(org: str) -> str:
    """A GitHub organisation login as typed, or SetupError."""
    org = org.strip()
    if not _LOGIN.match(org):
        raise SetupError(f"{org!r} is not a GitHub organisation name")
    return org


def new_app_url(api_url: str, state: str, org: str | None = None) -> str:
    """Where the manifest form posts: the user's or an organisation's "new App" page."""
    base = web_url(api_url)
    owner = f"/organizations/{quote(check_org(org))}" if org else ""
    return f"{base}{owner}/settings/apps/new?state={quote(state)}"


class States:
    """One-time CSRF states handed to the form and checked when GitHub redirects back.

    A state is signed with a key of this process and carries its expiry, so issuing one
    keeps nothing here: strangers loading the page cannot push out the operator's state. The
    browser keeps it in a cookie, and the callback wants the two to agree. Only used states
    are remembered, until they expire, so each works once.
    """

    def __init__(self, ttl: float = STATE_TTL_SECONDS, limit: int = MAX_USED_STATES) -> None:
        self._key = secrets.token_bytes(32)
        self._used: OrderedDict[str, float] = OrderedDict()
        self._ttl, self._limit = ttl, limit

    def _mac(self, nonce: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{nonce}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, current: str | None = None) -> str:
        """A fresh state, or `current` when it is still valid (so open tabs stay valid)."""
        if current and self.valid(current):
            return current
        nonce = secrets.token_urlsafe(18)
        expires = int(time.time() + self._ttl)
        return f"{nonce}.{expires}.{self._mac(nonce, expires)}"

    def valid(self, state: str | None) -> bool:
        if not state or not state.isascii() or state.count(".") != 2:
            return False
        nonce, expires_text, mac = state.split(".")
        if not expires_text.isdigit() or len(expires_text) > 12:
            return False
        expires = int(expires_text)
        return (hmac.compare_digest(mac.encode(), self._mac(nonce, expires).encode())
                and time.time() < expires and nonce not in self._used)

    def consume(self, state: str) -> None:
        now = time.time()
        for nonce, expires in list(self._used.items()):
            if expires <= now:
                del self._used[nonce]
        nonce, expires_text, _ = state.split(".")
        self._used[nonce] = float(expires_text)
        while len(self._used) > self._limit:
            self._used.popitem(last=False)


async def exchange_code(session: aiohttp.ClientSession, api_url: str,
                        code: str) -> AppCredentials:
    """`POST /app-manifests/{code}/conversions` (no credential): the new App's id, key, secret."""
    github = gidgethub.aiohttp.GitHubAPI(session, USER_AGENT, base_url=api_url.rstrip("/"))
    try:
        created = await github.post("/app-manifests/{code}/conversions", {"code": code},
                                    data=b"")
    except gidgethub.HTTPException as exc:
        status = int(exc.status_code)
        if status >= 500:
            raise SetupError(f"GitHub failed to convert the code ({status}). Start again.",
                             502) from exc
        raise SetupError(f"GitHub refused the code ({status}): it converts once and expires "
                         "after an hour. Start again.") from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SetupError(f"GitHub could not be reached at {api_url} "
                         f"({type(exc).__name__})", 502) from exc
    try:
        credentials = AppCredentials(int(created["id"]), str(created["slug"]),
                                     str(created["html_url"]), str(created["pem"]),
                                     str(created["webhook_secret"]),
                                     str(created.get("client_id") or ""),
                                     str(created.get("client_secret") or ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise SetupError("GitHub's answer lacks the App's id, key or webhook secret",
                         502) from exc
    if not created.get("webhook_secret"):
        raise SetupError("GitHub's answer lacks the App's webhook secret", 502)
    register_secret(credentials.private_key)
    register_secret(credentials.webhook_secret)
    register_secret(credentials.client_secret)
    return credentials


def _quote(value: str) -> str:
    """A .env value that python-dotenv (and so pydantic-settings) reads back unchanged."""
    if "${" in value:  # python-dotenv expands ${NAME} inside any quotes
        raise SetupError("a value holds ${, which a .env file cannot express", 502)
    # Double quotes with escapes keep one line per variable, the PEM's newlines as \n.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _assigns(line: str) -> str | None:
    """The variable a .env line sets, if any (`KEY=...` or `export KEY=...`)."""
    match = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=", line)
    return match.group(1) if match else None


def write_env(path: Path, credentials: AppCredentials) -> None:
    """Write the App's settings into `path` with mode 0600, keeping every other line.

    The file is replaced atomically (a new file, then rename), so it never exists with a
    wider mode or half written, and a stale GITHUB_PRIVATE_KEY_PATH cannot shadow the key.
    """
    kept: list[str] = []
    if path.exists():
        lines = path.read_text().splitlines()
        skipping = False  # inside a multi-line quoted value being replaced
        for line in lines:
            if skipping:
                skipping = not line.rstrip().endswith(("'", '"'))
                continue
            if _assigns(line) in ENV_KEYS:
                value = line.split("=", 1)[1].strip()
                quote_char = value[:1]
                skipping = quote_char in ("'", '"') and (
                    len(value) == 1 or not value.endswith(quote_char))
                continue
            kept.append(line)
    values = {"GITHUB_APP_ID": str(credentials.app_id),
              "GITHUB_PRIVATE_KEY": credentials.private_key,
              "GITHUB_WEBHOOK_SECRET": credentials.webhook_secret}
    if credentials.client_id and credentials.client_secret:
        values["GITHUB_CLIENT_ID"] = credentials.client_id
        values["GITHUB_CLIENT_SECRET"] = credentials.client_secret
    body = "\n".join(kept).rstrip("\n")
    block = "\n".join(f"{key}={_quote(value)}" for key, value in values.items())
    header = f"# The GitHub App {credentials.slug}, written by `agentbot setup`."
    text = (body + "\n\n" if body else "") + header + "\n" + block + "\n"
    directory = path.resolve().parent
    fd, temporary = tempfile.mkstemp(prefix=".env.", dir=directory)  # created with mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    log.info("wrote the GitHub App's credentials to %s", path, extra={"app": credentials.slug})


def manifest_json(manifest: dict[str, Any]) -> str:
    """The manifest as the form's `manifest` field carries it."""
    return json.dumps(manifest, separators=(",", ":"))
