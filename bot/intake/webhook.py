"""POST /webhook: verify the signature, store the delivery durably, answer 202."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from gidgethub import ValidationFailure, sansio

from bot.intake.writer import DeliveryRefused, DeliveryRow, StoreUnavailable

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 25 * 1024 * 1024
SIGNATURE_PREFIX = "sha256="
_SIGNATURE = re.compile(r"sha256=[0-9a-fA-F]{64}")
# GitHub's delivery ids are GUIDs and its event names lower-case words; neither header is
# covered by the signature, so anything else is refused before it reaches a batch.
_DELIVERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Bodies not yet verified, over all requests at once: what unsigned senders can make the
# process hold. Past it, requests are answered 503 before more is read.
UNVERIFIED_BUDGET_BYTES = 64 * 1024 * 1024
# GitHub gives up on a delivery after 10 s: a body still arriving after this is no delivery
# of GitHub's, and its connection is cut.
BODY_TIMEOUT_SECONDS = 10.0
# BIGINT columns hold ids below 2**63.
MAX_ID = 2**63 - 1

WEBHOOK_SECRET_KEY: web.AppKey[str | None] = web.AppKey("webhook_secret", str)
# Stores a delivery, or raises StoreUnavailable; either well before GitHub's 10 s are up.
STORE_KEY: web.AppKey[Callable[[DeliveryRow], Awaitable[None]]] = web.AppKey("store_delivery")
OBSERVE_KEY: web.AppKey[Callable[[str, str, float], None]] = web.AppKey("observe_intake")

SETUP_MODE_MESSAGE = (
    "agentbot is in setup mode: no GitHub App is configured. "
    "Run `agentbot setup` or open this server's / page to create one."
)


def _reply(status: int, message: str) -> web.Response:
    # orjson, not web.json_response's json.dumps: this runs for every delivery.
    return web.Response(body=orjson.dumps({"message": message}), status=status,
                        content_type="application/json")


@dataclass
class UnverifiedBytes:
    """The bytes of bodies read but not yet verified, over every request in flight."""

    held: int = 0


UNVERIFIED_KEY: web.AppKey[UnverifiedBytes] = web.AppKey("unverified_bytes", UnverifiedBytes)


class _Refusal(Exception):
    def __init__(self, status: int, message: str, outcome: str) -> None:
        super().__init__(message)
        self.status, self.message, self.outcome = status, message, outcome


async def _read_limited(request: web.Request, budget: UnverifiedBytes) -> tuple[bytes, int]:
    """The body and the bytes it holds of the shared budget (the caller gives them back);
    _Refusal as soon as it grows past the limit, the budget runs out, or it crawls."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                budget.held += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _Refusal(413, f"payload over {MAX_BODY_BYTES} bytes", "too_large")
                if budget.held > UNVERIFIED_BUDGET_BYTES:
                    raise _Refusal(503, "too many unverified bytes in flight; try again",
                                   "busy")
                chunks.append(chunk)
    except TimeoutError:
        budget.held -= size
        log.warning("webhook body cut: not received within %.0f s", BODY_TIMEOUT_SECONDS)
        raise _Refusal(408, f"the body did not arrive within {BODY_TIMEOUT_SECONDS:.0f} s",
                       "timeout") from None
    except (RequestPayloadError, HttpProcessingError):
        # A Content-Encoding the body does not follow, or a broken chunked encoding.
        budget.held -= size
        raise _Refusal(400, "the body could not be read as its Content-Encoding or "
                            "Transfer-Encoding says", "bad_request") from None
    except (_Refusal, ConnectionError, asyncio.CancelledError):
        # ConnectionError: the connection ended under the read (cut, or the client left).
        budget.held -= size
        raise
    return b"".join(chunks), size


def _delivery(delivery_id: str, event: str, body: bytes) -> DeliveryRow | str:
    """The row to store, or why the body is refused with a 400.

    A function of its own so that the parsed body (hundreds of objects) is freed here,
    not kept alive while the handler waits for the commit, where it would pile up for the
    cyclic collector to walk.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "body is not valid JSON"
    if not isinstance(data, dict):
        return "body is not a JSON object"
    installation = data.get("installation")
    installation_id = None
    if isinstance(installation, dict) and installation.get("id") is not None:
        installation_id = installation["id"]
        if isinstance(installation_id, bool) or not isinstance(installation_id, int) \
                or not 0 < installation_id <= MAX_ID:
            return "installation.id is not an installation id (a whole number from 1 to 2^63-1)"
    action = data.get("action")
    return DeliveryRow(
        delivery_id=delivery_id,
        event=event,
        action=action[:64] if isinstance(action, str) else None,
        installation_id=installation_id,
        payload=body,
    )


async def handle_webhook(request: web.Request) -> web.Response:
    """Answer GitHub: 202 once the delivery is stored; never a 500 for client input."""
    started = time.perf_counter()
    secret = request.app[WEBHOOK_SECRET_KEY]
    observe = request.app.get(OBSERVE_KEY)
    event = request.headers.get("X-GitHub-Event", "")

    def answer(status: int, message: str, outcome: str) -> web.Response:
        if observe is not None:
            observe(event or "unknown", outcome, time.perf_counter() - started)
        return _reply(status, message)

    if not secret:
        return answer(503, SETUP_MODE_MESSAGE, "setup_mode")
    if request.content_type != "application/json":
        return answer(
            415,
            f"content type {request.content_type!r} is not supported: set the App's "
            "webhook content type to application/json",
            "bad_content_type",
        )
    delivery_id = request.headers.get("X-GitHub-Delivery", "")
    if not event or not delivery_id:
        missing = [h for h, v in (("X-GitHub-Event", event),
                                  ("X-GitHub-Delivery", delivery_id)) if not v]
        return answer(400, f"missing header: {', '.join(missing)}", "bad_request")
    if not _DELIVERY_ID.fullmatch(delivery_id):
        return answer(400, "X-GitHub-Delivery is not a delivery id (letters, digits and "
                      "dashes, at most 64)", "bad_request")
    if not _EVENT_NAME.fullmatch(event):
        return answer(400, "X-GitHub-Event is not an event name (lower-case letters and "
                      "underscores, at most 64)", "bad_request")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return answer(413, f"payload over {MAX_BODY_BYTES} bytes", "too_large")
    # The signature's form is checked before the body is read: a malformed one costs nothing.
    signature = request.headers.get("X-Hub-Signature-256", "")
    if not signature:
        return answer(401, "missing X-Hub-Signature-256", "unauthorized")
    if not signature.startswith(SIGNATURE_PREFIX):
        return answer(401, "X-Hub-Signature-256 must start with sha256=", "unauthorized")
    if not _SIGNATURE.fullmatch(signature):
        return answer(401, "X-Hub-Signature-256 must be sha256= and 64 hex digits",
                      "unauthorized")
    budget = request.app[UNVERIFIED_KEY]
    try:
        body, held = await _read_limited(request, budget)
    except _Refusal as refusal:
        response = answer(refusal.status, refusal.message, refusal.outcome)
        # What is left of the body is not read: the connection ends with the answer.
        response.force_close()
        return response
    try:
        sansio.validate_event(body, signature=signature, secret=secret)
    except ValidationFailure:
        return answer(401, "signature does not match the payload", "unauthorized")
    finally:
        budget.held -= held

    row = _delivery(delivery_id, event, body)
    if isinstance(row, str):
        return answer(400, row, "bad_request")
    try:
        # The store answers within intake.STORE_TIMEOUT_SECONDS, stored or not.
        await request.app[STORE_KEY](row)
    except DeliveryRefused as refused:
        log.warning("delivery refused by the database: %s", refused,
                    extra={"delivery_id": delivery_id})
        return answer(400, f"delivery refused: {refused}", "bad_request")
    except StoreUnavailable:
        log.warning("delivery not stored: database unavailable",
                    extra={"delivery_id": delivery_id, "event": event})
        return answer(503, "database unavailable; GitHub can redeliver this delivery",
                      "unavailable")
    return answer(202, "accepted", "accepted")
