"""The setup page at `/`: post the App manifest to GitHub, take the code back, write `.env`."""

from __future__ import annotations

import asyncio
import html
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import ClientSession, ClientTimeout, web

from bot.setup.flow import (
    CALLBACK_PATH,
    ENV_PATH,
    STATE_TTL_SECONDS,
    AppCredentials,
    SetupError,
    States,
    check_public_url,
    exchange_code,
    find_manifest,
    load_manifest,
    manifest_json,
    new_app_url,
    write_env,
)

log = logging.getLogger(__name__)

STATE_COOKIE = "agentbot_setup_state"

# User-facing text.
TITLE = "Create agentbot's GitHub App"
INTRO = ("agentbot has no GitHub App yet. The button below sends the App's manifest "
         "(app-manifest.yml, with this server's URLs filled in) to GitHub, where you name the "
         "App and confirm. GitHub then sends you back here, and agentbot saves the App's id, "
         "private key and webhook secret to {env} (readable only by you).")
OWNER_USER = "your personal account"
OWNER_ORG = "the organisation {org}"
ORG_LABEL = "To create it for an organisation you administer instead, type its name:"
ORG_BUTTON = "Use this organisation"
USER_LINK = "Create it on your personal account instead"
CREATE_BUTTON = "Create the App on GitHub for {owner}"
ORIGIN_NOTE = ("AGENTBOT_PUBLIC_URL is not set, so the webhook URL is the address this page "
               "was opened at. If GitHub reaches agentbot at another address, set "
               "AGENTBOT_PUBLIC_URL and reload.")
DONE_TITLE = "The GitHub App {name} is created"
DONE_SAVED = "Its id, private key and webhook secret are saved in {env} (mode 0600)."
DONE_SERVE = "agentbot is starting with the new App now; this setup page is gone from here on."
DONE_COMMAND = "Start agentbot with <code>agentbot serve</code>; it reads {env}."
DONE_INSTALL = ("Next, install the App on the repositories it may work on, then label an "
                "issue <code>agent</code> or comment <code>/agent help</code> on one.")
INSTALL_BUTTON = "Install {name} on repositories"
BAD_STATE = ("This request did not come from this setup page: its state is missing, unknown "
             "or already used (or the page was opened in another browser).")
MISSING_CODE = "GitHub's redirect carries no code."
ERROR_TITLE = "Setup did not finish"
START_AGAIN = "Start again"

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;"
          "line-height:1.5}code{background:#f3f3f3;padding:0 .2em}dt{font-weight:600}"
          "button,.button{font-size:1rem;padding:.5rem 1rem}form{margin:1rem 0}"
          ".note{color:#8a5300}")
_HEADERS = {
    # The callback URL holds GitHub's code: no Referer may carry it to the next page.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}


@dataclass
class SetupFlow:
    """One setup page's configuration and state (pending CSRF states, the outcome)."""

    api_url: str
    env_path: Path = ENV_PATH
    manifest_path: Path | None = None
    public_url: str | None = None  # the webhook's base; None: the address the page is opened at
    done_message: str = DONE_SERVE
    states: States = field(default_factory=States)
    completed: asyncio.Event = field(default_factory=asyncio.Event)
    credentials: AppCredentials | None = None
    session: ClientSession | None = None


FLOW_KEY: web.AppKey[SetupFlow] = web.AppKey("setup_flow", SetupFlow)


def _escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><main><h1>{_escape(title)}</h1>\n{body}\n</main></body></html>\n")
    return web.Response(text=text, status=status, content_type="text/html",
                        headers=_HEADERS)


def _error(message: str, status: int = 400) -> web.Response:
    body = f"<p>{_escape(message)}</p>\n<p><a href=\"/\">{START_AGAIN}</a></p>"
    return _page(ERROR_TITLE, body, status)


_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _origin(request: web.Request) -> str:
    """This server's own address as the browser reached it: the Host header only when it names
    this server (a loopback name or the address the connection came in on, with its port),
    else the connection's local address. A stranger's Host never reaches the manifest."""
    local = request.transport.get_extra_info("sockname") if request.transport else None
    local_host, local_port = (str(local[0]), int(local[1])) if local else ("127.0.0.1", 80)
    given = urlsplit(f"http://{request.host}")
    try:
        given_port = given.port or 80
    except ValueError:
        given_port = -1
    try:
        loopback = ipaddress.ip_address(local_host).is_loopback
    except ValueError:  # a scoped IPv6 address (fe80::1%eth0), say
        loopback = False
    own = {local_host} | (_LOOPBACK_NAMES if loopback else set())
    host = given.hostname if given.hostname in own and given_port == local_port else local_host
    shown = f"[{host}]" if host and ":" in host else host
    return f"http://{shown}:{local_port}"


def _callback_base(request: web.Request, public_url: str | None) -> str:
    """Back to the address the browser is on (its cookie lives there): the public URL when
    the page was opened through it (its scheme survives a TLS-terminating proxy), else this
    server's own address (`agentbot setup` on localhost, a port-forward)."""
    if public_url and urlsplit(public_url).netloc == request.host:
        return public_url.rstrip("/")
    return _origin(request)


async def setup_page(request: web.Request) -> web.Response:
    """`GET /` (`?org=NAME` for an organisation): the form that posts the manifest to GitHub."""
    flow = request.app[FLOW_KEY]
    org = request.query.get("org", "").strip() or None
    state = flow.states.issue(request.cookies.get(STATE_COOKIE))
    try:
        action = new_app_url(flow.api_url, state, org)
        public_url = check_public_url(flow.public_url or _origin(request))
        callback = _callback_base(request, flow.public_url) + CALLBACK_PATH
        manifest = load_manifest(find_manifest(flow.manifest_path), public_url,
                                       callback)
    except SetupError as exc:
        return _error(str(exc))
    owner = OWNER_ORG.format(org=org) if org else OWNER_USER
    events = ", ".join(manifest.get("default_events", []))
    permissions = ", ".join(f"{name}: {level}" for name, level
                            in manifest.get("default_permissions", {}).items())
    parts = [
        f"<p>{_escape(INTRO.format(env=flow.env_path))}</p>",
        "<dl>",
        f"<dt>Webhook URL</dt><dd><code>{_escape(manifest['hook_attributes']['url'])}</code></dd>",
        f"<dt>Redirect URL</dt><dd><code>{_escape(callback)}</code></dd>",
        f"<dt>Events</dt><dd>{_escape(events)}</dd>",
        f"<dt>Permissions</dt><dd>{_escape(permissions)}</dd>",
        "</dl>",
    ]
    if flow.public_url is None:
        parts.append(f'<p class="note">{_escape(ORIGIN_NOTE)}</p>')
    parts += [
        f'<form method="post" action="{_escape(action)}">',
        f'<input type="hidden" name="manifest" value="{_escape(manifest_json(manifest))}">',
        f'<button type="submit">{_escape(CREATE_BUTTON.format(owner=owner))}</button>',
        "</form>",
    ]
    if org:
        parts.append(f'<p><a href="/">{_escape(USER_LINK)}</a></p>')
    parts += [
        '<form method="get" action="/">',
        f'<label>{_escape(ORG_LABEL)} <input name="org" required maxlength="39" '
        f'pattern="[A-Za-z0-9-]+" value="{_escape(org or "")}"></label>',
        f"<button type=\"submit\">{_escape(ORG_BUTTON)}</button>",
        "</form>",
    ]
    response = _page(TITLE, "\n".join(parts))
    # The state is tied to this browser too: a valid state alone (anyone can load this page)
    # must not let a stranger's link plant their App's code here.
    response.set_cookie(STATE_COOKIE, state, max_age=STATE_TTL_SECONDS, path="/",
                        httponly=True, samesite="Lax", secure=request.secure)
    return response


async def setup_callback(request: web.Request) -> web.StreamResponse:
    """`GET /setup/callback?code=&state=`: exchange the code, write `.env`, say what is next."""
    flow = request.app[FLOW_KEY]
    state = request.query.get("state", "")
    if not flow.states.valid(state) or request.cookies.get(STATE_COOKIE) != state:
        return _error(BAD_STATE)
    flow.states.consume(state)
    code = request.query.get("code", "")
    if not code or len(code) > 256:
        return _error(MISSING_CODE)
    if flow.session is None:
        raise RuntimeError("the setup page's session is not open")
    try:
        credentials = await exchange_code(flow.session, flow.api_url, code)
        write_env(flow.env_path, credentials)
    except SetupError as exc:
        log.warning("setup: %s", exc)
        return _error(str(exc), exc.status)
    except OSError as exc:
        log.error("setup: cannot write %s: %s", flow.env_path, exc.strerror)
        return _error(f"cannot write {flow.env_path}: {exc.strerror}", 500)
    flow.credentials = credentials
    name = _escape(credentials.slug)
    body = "\n".join([
        f"<p>{_escape(DONE_SAVED.format(env=flow.env_path))}</p>",
        f"<p>{flow.done_message.format(env=_escape(flow.env_path))}</p>",
        f"<p>{DONE_INSTALL}</p>",
        f'<p><a class="button" href="{_escape(credentials.install_url)}">'
        f"{INSTALL_BUTTON.format(name=name)}</a></p>",
    ])
    response = _page(DONE_TITLE.format(name=credentials.slug), body)
    response.del_cookie(STATE_COOKIE, path="/")
    # Sent in full before anyone waiting on `completed` stops this server.
    await response.prepare(request)
    await response.write_eof()
    flow.completed.set()
    return response


async def run_until_created(app: web.Application, host: str, port: int,
                            announce: Callable[[str], None]) -> AppCredentials:
    """Serve `app` (holding the setup routes) until the App is created; its credentials."""
    flow = app[FLOW_KEY]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = "localhost" if bound_host in ("0.0.0.0", "::") else bound_host  # noqa: S104
        shown = f"[{shown}]" if ":" in shown else shown
        announce(f"http://{shown}:{bound_port}/")
        await flow.completed.wait()
    finally:
        await runner.cleanup()
    assert flow.credentials is not None
    return flow.credentials


def add_routes(app: web.Application, flow: SetupFlow) -> None:
    """Serve the setup page at `/` and its callback on `app`, with a session for GitHub."""
    app[FLOW_KEY] = flow
    app.router.add_get("/", setup_page)
    app.router.add_get(CALLBACK_PATH, setup_callback)

    async def session(app: web.Application) -> AsyncIterator[None]:
        flow.session = ClientSession(timeout=ClientTimeout(total=30))
        yield
        await flow.session.close()
        flow.session = None

    app.cleanup_ctx.append(session)
