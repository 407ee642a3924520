"""Model API proxy: the sandbox's agent calls providers here, the operator's key goes upstream."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from bot.gateway.grants import Audit, Grant, Grants
from bot.gateway.usage import ProviderKind, Usage, meter
from bot.logs import log_context

log = logging.getLogger(__name__)

# Texts the sandbox's agent sees in the provider's own error shape.
NO_CREDENTIAL = (
    "The agentbot gateway refused this request: the gateway credential is missing, unknown, "
    "or its run has ended."
)
NOT_CONFIGURED = ("The operator has not configured {provider} on this agentbot gateway: "
                  "set {variables} in the gateway's environment.")
# The variables each provider's key is read from (bot/config/settings.py).
KEY_VARIABLES = {"anthropic": "ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN",
                 "openai": "OPENAI_API_KEY or CODEX_API_KEY"}
TOO_LARGE = "The request body is larger than the {limit} bytes the agentbot gateway forwards."
UNREACHABLE = "The agentbot gateway could not reach {provider}."
NOT_FORWARDED = ("The agentbot gateway does not forward {method} {path} to {provider}; "
                 "it forwards {allowed}.")

# What an agent needs of each provider's API. The rest (batches, files, fine-tuning, stored
# responses, administration) would spend the operator's money where no usage comes back to
# meter, or reach data beyond the run: a prompt-injected agent gets none of it. Paths are
# matched as sent, undecoded, so no encoding trick reaches another endpoint.
_MODEL_ID = r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}"
ENDPOINTS: dict[str, tuple[tuple[str, str], ...]] = {
    "anthropic": (("POST", "v1/messages"), ("POST", "v1/messages/count_tokens"),
                  ("GET", "v1/models"), ("GET", f"v1/models/{_MODEL_ID}")),
    "openai": (("POST", "v1/responses"), ("POST", "v1/chat/completions"),
               ("GET", "v1/models"), ("GET", f"v1/models/{_MODEL_ID}")),
}
_ENDPOINT_PATTERNS = {kind: tuple((method, re.compile(path)) for method, path in endpoints)
                      for kind, endpoints in ENDPOINTS.items()}

# Agents send whole conversations (images included) in each request, well past aiohttp's
# 1 MiB default, but a body of more than this is a mistake or an attack.
REQUEST_LIMIT = 32 << 20
# A response may pause for minutes while a model thinks (streams send pings meanwhile); a read
# that stalls as long as the providers' SDKs wait themselves (10 minutes) is a dead upstream.
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600)

# Meaningful for one connection only (RFC 9110 7.6.1), or recomputed for the next hop.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host",
    "content-length", "expect",
})
# What Anthropic's API asks of a request made with an OAuth token (Claude Code sends it).
ANTHROPIC_OAUTH_BETA = "oauth-2025-04-20"
# The sandbox's credential must never reach a provider; the gateway sets the real key.
_AUTH_HEADERS = frozenset({"authorization", "x-api-key"})
# The body is passed on decoded (usage is read from it), so its encoding and length change.
_RESPONSE_DROP = _HOP_BY_HOP | {"content-encoding"}


@dataclass(frozen=True)
class Upstream:
    """A provider the gateway forwards to, with the operator's key (None: not configured)."""

    base_url: str  # `https://api.anthropic.com`, `https://api.openai.com`: paths come whole
    api_key: str | None = field(repr=False)
    kind: ProviderKind
    # A Claude subscription's OAuth token (CLAUDE_CODE_OAUTH_TOKEN) rather than an API key:
    # Anthropic takes it as a bearer token, with the beta that admits OAuth.
    oauth: bool = False


class BudgetKeeper(Protocol):
    """Decides whether a run may send another model request (bot.gateway.runs.RunBudgets)."""

    async def refusal(self, grant: Grant, model: str | None) -> str | None:
        """None when the request may go out; else why not, in words for the agent."""


class UsageSink(Protocol):
    """Where the usage of each model response is booked (bot.gateway.runs.UsageLedger)."""

    async def __call__(self, grant: Grant, provider: str, usage: Usage) -> None:
        """Book one response's usage against the grant's run."""


def forwarded(kind: ProviderKind, method: str, tail: str) -> bool:
    """Whether the gateway forwards this request of a provider's API (`tail`: its raw path
    without the leading slash)."""
    return any(method == allowed and pattern.fullmatch(tail)
               for allowed, pattern in _ENDPOINT_PATTERNS[kind])


def _error_body(kind: ProviderKind, status: int, message: str) -> dict[str, Any]:
    """An error as the provider would word it, so the agent's SDK raises its usual class."""
    if kind == "anthropic":
        error_type = {401: "authentication_error", 404: "not_found_error",
                      413: "request_too_large"}.get(status, "api_error")
        return {"type": "error", "error": {"type": error_type, "message": message}}
    if status == 401:
        error_type, code = "invalid_request_error", "invalid_api_key"
    elif status == 404:
        error_type, code = "invalid_request_error", None
    elif status == 413:
        error_type, code = "invalid_request_error", "request_too_large"
    else:
        error_type, code = "server_error", None
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _error(kind: ProviderKind, status: int, message: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(_error_body(kind, status, message)),
                        content_type="application/json")


def _budget_error(kind: ProviderKind, message: str) -> web.Response:
    """A spent budget as each provider words a spent balance, which its CLIs do not retry:
    Anthropic's 402 `billing_error`, OpenAI's 429 `insufficient_quota`."""
    if kind == "anthropic":
        status = 402
        body: dict[str, Any] = {"type": "error",
                                "error": {"type": "billing_error", "message": message}}
    else:
        status = 429
        body = {"error": {"message": message, "type": "insufficient_quota", "param": None,
                          "code": "insufficient_quota"}}
    # The providers' SDKs obey this header before their own retry rules.
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers={"x-should-retry": "false"})


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The request body as a JSON object, or None when it is none."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _requested_model(data: dict[str, Any] | None) -> str | None:
    """The `model` a request body names, if any."""
    model = data.get("model") if data is not None else None
    return model if isinstance(model, str) and model else None


def _credential(request: web.Request) -> str | None:
    """The gateway credential, where the agent's CLI puts its API key."""
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _request_headers(request: web.Request, kind: ProviderKind, key: str,
                     oauth: bool = False) -> CIMultiDict[str]:
    """The request's headers as the provider gets them: the operator's key, nothing of ours."""
    named = {token.strip().lower() for token in request.headers.get("Connection", "").split(",")}
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in _HOP_BY_HOP or lower in _AUTH_HEADERS or lower in named \
                or lower.startswith("proxy-") or lower == "accept-encoding":
            continue
        headers.add(name, value)
    if kind == "anthropic" and oauth:
        headers["Authorization"] = f"Bearer {key}"
        betas = [beta.strip() for beta in headers.getall("anthropic-beta", [])
                 for beta in beta.split(",") if beta.strip()]
        headers["anthropic-beta"] = ",".join(dict.fromkeys([*betas, ANTHROPIC_OAUTH_BETA]))
    elif kind == "anthropic":
        headers["x-api-key"] = key
    else:
        headers["Authorization"] = f"Bearer {key}"
    # The gateway reads usage from the body, which it cannot do through gzip or brotli.
    headers["Accept-Encoding"] = "identity"
    return headers


def _response_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    named = {token.strip().lower() for token in headers.get("Connection", "").split(",")}
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lower = name.lower()
        if lower in _RESPONSE_DROP or lower in named or lower.startswith("proxy-"):
            continue
        kept.add(name, value)
    return kept


def _tail(request: web.Request, provider: str) -> str:
    """The provider's own path, as the client encoded it, so nothing is decoded on the way."""
    prefix = f"/{provider}/"
    raw = request.rel_url.raw_path
    if raw.startswith(prefix):
        return raw[len(prefix):]
    # Served under a prefix (a sub-application): encode the matched path again.
    return URL.build(path="/" + request.match_info["tail"]).raw_path[1:]


def _with_stream_usage(body: bytes, data: dict[str, Any] | None) -> bytes:
    """A streamed Chat Completions request (`data`, parsed from `body`) asking for usage in
    its last chunk (OpenAI sends none otherwise); any other body, byte for byte as it came."""
    if data is None or data.get("stream") is not True:
        return body
    options = data.get("stream_options")
    if options is None:
        options = {}
    if not isinstance(options, dict) or options.get("include_usage") is True:
        return body
    data["stream_options"] = {**options, "include_usage": True}
    return orjson.dumps(data)


class _TooLarge(Exception):
    pass


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > REQUEST_LIMIT:
        raise _TooLarge
    body = bytearray()
    # Read from the stream rather than request.read(), whose limit is the app's (1 MiB).
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > REQUEST_LIMIT:
            raise _TooLarge
    return bytes(body)


class ModelProxy:
    """Forwards a run's model API calls to the providers with the operator's keys, streams the
    answers back as they come, and books their token usage."""

    def __init__(self, grants: Grants, audit: Audit, session: aiohttp.ClientSession,
                 upstreams: Mapping[str, Upstream], on_usage: UsageSink | None = None,
                 budgets: BudgetKeeper | None = None) -> None:
        self.grants = grants
        self.audit = audit
        self.session = session
        self.upstreams = dict(upstreams)
        self.on_usage = on_usage
        self.budgets = budgets

    def handler(self, provider: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The request handler of one provider's routes."""
        upstream = self.upstreams[provider]

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.forward(request, provider, upstream)

        return handle

    async def forward(self, request: web.Request, provider: str,
                      upstream: Upstream) -> web.StreamResponse:
        """Serve one request of a provider's API: `/<provider>/<the provider's own path>`."""
        credential = _credential(request)
        grant = await self.grants.grant(credential) if credential else None
        if grant is None:
            log.warning("model request refused: no valid gateway credential",
                        extra={"provider": provider})
            return _error(upstream.kind, 401, NO_CREDENTIAL)
        with log_context(run_id=grant.run_id):
            return await self._serve(request, grant, provider, upstream)

    async def _serve(self, request: web.Request, grant: Grant, provider: str,
                     upstream: Upstream) -> web.StreamResponse:
        started = time.monotonic()
        tail = _tail(request, provider)
        path = "/" + tail
        outcome = _Outcome(path=path)
        try:
            if not forwarded(upstream.kind, request.method, tail):
                outcome.status, outcome.end = 404, "refused"
                allowed = ", ".join(f"{method} /{shown.replace(_MODEL_ID, '{model}')}"
                                    for method, shown in ENDPOINTS[upstream.kind])
                return _error(upstream.kind, 404, NOT_FORWARDED.format(
                    method=request.method, path=path[:200], provider=provider,
                    allowed=allowed))
            if upstream.api_key is None:
                outcome.status = 503
                return _error(upstream.kind, 503, NOT_CONFIGURED.format(
                    provider=provider, variables=KEY_VARIABLES[upstream.kind]))
            try:
                body = await _read_body(request)
            except _TooLarge:
                outcome.status = 413
                return _error(upstream.kind, 413, TOO_LARGE.format(limit=REQUEST_LIMIT))
            checked = self.budgets is not None and request.method == "POST" and grant.budget
            chat = upstream.kind == "openai" and request.method == "POST" \
                and path.endswith("/chat/completions")
            # Parsed once, and only where something reads it: bodies run to megabytes.
            data = _json_object(body) if checked or chat else None
            if checked and self.budgets is not None:
                refusal = await self.budgets.refusal(grant, _requested_model(data))
                if refusal is not None:
                    outcome.status, outcome.end = (402 if upstream.kind == "anthropic"
                                                   else 429), "budget"
                    return _budget_error(upstream.kind, refusal)
            if chat:
                body = _with_stream_usage(body, data)
            return await self._relay(request, grant, upstream, upstream.api_key, provider,
                                     tail, body, outcome)
        finally:
            await self._book(grant, provider, outcome, time.monotonic() - started)

    async def _relay(self, request: web.Request, grant: Grant, upstream: Upstream, key: str,
                     provider: str,
                     tail: str, body: bytes, outcome: _Outcome) -> web.StreamResponse:
        target = upstream.base_url.rstrip("/") + "/" + tail
        if request.rel_url.raw_query_string:
            target += "?" + request.rel_url.raw_query_string
        try:
            upstream_response = await self.session.request(
                request.method, URL(target, encoded=True),
                headers=_request_headers(request, upstream.kind, key, upstream.oauth),
                data=body if body or request.method != "GET" else None,
                allow_redirects=False, timeout=UPSTREAM_TIMEOUT, auto_decompress=True)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("model provider %s unreachable (%s)", provider, type(exc).__name__)
            outcome.status = 502
            return _error(upstream.kind, 502, UNREACHABLE.format(provider=provider))
        outcome.status = upstream_response.status
        usage_meter = meter(upstream.kind, upstream_response.headers.get("Content-Type"))
        complete = False
        try:
            response = web.StreamResponse(
                status=upstream_response.status,
                reason=_reason(upstream_response.reason),
                headers=_response_headers(upstream_response.headers))
            await response.prepare(request)
            while True:
                try:
                    chunk = await upstream_response.content.readany()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    # Cut upstream: cut the client too, so the agent sees a broken answer (and
                    # retries it) rather than one that ends early but looks whole.
                    log.warning("model stream from %s cut (%s)", provider, type(exc).__name__)
                    outcome.end = "upstream_cut"
                    if request.transport is not None:
                        request.transport.close()
                    return response
                if not chunk:
                    break
                usage_meter.feed(chunk)
                if usage_meter.final and not outcome.booked:
                    # Booked before the client sees the last usage: Codex sends its next
                    # request on `response.completed`, before the stream has ended.
                    outcome.usage = usage_meter.finish()
                    await self._book_usage(grant, provider, outcome)
                try:
                    await response.write(chunk)  # waits while the client is slow to read
                except ConnectionError:
                    outcome.end = "client_gone"
                    return response
            # Booked before the answer ends, so that the run's next request (which its agent
            # sends only after this one ended) is checked against a budget that counts it.
            outcome.usage = usage_meter.finish()
            await self._book_usage(grant, provider, outcome)
            await response.write_eof()
            complete = True
            return response
        except asyncio.CancelledError:
            # aiohttp cancels a handler whose client is gone when the app runs with
            # handler_cancellation; what was read so far is still booked (_serve's finally).
            outcome.end = "client_gone"
            raise
        finally:
            if outcome.usage is None:
                outcome.usage = usage_meter.finish()
            if complete:
                upstream_response.release()
            else:
                upstream_response.close()

    async def _book_usage(self, grant: Grant, provider: str, outcome: _Outcome) -> None:
        """Book the outcome's usage once; a failure is logged, never raised."""
        if outcome.booked or outcome.usage is None or self.on_usage is None:
            return
        outcome.booked = True
        try:
            await self.on_usage(grant, provider, outcome.usage)
        except Exception as exc:
            log.error("could not book model usage (%s)", type(exc).__name__)

    async def _book(self, grant: Grant, provider: str, outcome: _Outcome,
                    seconds: float) -> None:
        """Book the usage (unless the answer's end did) and audit the request; neither may
        fail the response."""
        await self._book_usage(grant, provider, outcome)
        try:
            await self.audit.record(grant.run_id, "model", outcome.audit(provider, seconds))
        except Exception as exc:
            log.error("could not audit a model request (%s)", type(exc).__name__)


@dataclass
class _Outcome:
    """What one proxied request came to, for the audit trail."""

    path: str
    status: int = 0
    end: str = "complete"  # complete | upstream_cut | client_gone | budget | refused
    usage: Usage | None = None
    booked: bool = False  # the usage went to the ledger

    def audit(self, provider: str, seconds: float) -> dict[str, Any]:
        usage = self.usage or Usage()
        return {
            "provider": provider,
            "path": self.path[:200],
            "status": self.status,
            "model": usage.model,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "end": self.end,
            "seconds": round(seconds, 3),
        }


def _reason(reason: str | None) -> str | None:
    # aiohttp refuses a reason phrase with a line break, and an upstream could send one.
    if reason and "\r" not in reason and "\n" not in reason:
        return reason
    return None


def add_routes(app: web.Application, proxy: ModelProxy) -> None:
    """Serve `/<provider>/...` for each configured provider, GET and POST only."""
    for provider in proxy.upstreams:
        handle = proxy.handler(provider)
        for method in ("GET", "POST"):
            app.router.add_route(method, f"/{provider}/{{tail:.*}}", handle)

