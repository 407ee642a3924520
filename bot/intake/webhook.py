"""POST /webhook: verify the signature, store the delivery durably, answer 202."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from gidgethub import ValidationFailure, sansio

from bot.intake.writer import DeliveryRow, StoreUnavailable

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 25 * 1024 * 1024
SIGNATURE_PREFIX = "sha256="

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


async def _read_limited(request: web.Request) -> bytes | None:
    """The body, or None as soon as it grows past the limit (never buffered whole)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


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
    installation_id = installation.get("id") if isinstance(installation, dict) else None
    action = data.get("action")
    return DeliveryRow(
        delivery_id=delivery_id,
        event=event,
        action=action[:64] if isinstance(action, str) else None,
        installation_id=installation_id if isinstance(installation_id, int) else None,
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
    if len(delivery_id) > 64 or len(event) > 64:
        return answer(400, "X-GitHub-Event or X-GitHub-Delivery is too long", "bad_request")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return answer(413, f"payload over {MAX_BODY_BYTES} bytes", "too_large")
    body = await _read_limited(request)
    if body is None:
        return answer(413, f"payload over {MAX_BODY_BYTES} bytes", "too_large")

    signature = request.headers.get("X-Hub-Signature-256", "")
    if not signature:
        return answer(401, "missing X-Hub-Signature-256", "unauthorized")
    if not signature.startswith(SIGNATURE_PREFIX):
        return answer(401, "X-Hub-Signature-256 must start with sha256=", "unauthorized")
    try:
        sansio.validate_event(body, signature=signature, secret=secret)
    except ValidationFailure:
        return answer(401, "signature does not match the payload", "unauthorized")

    row = _delivery(delivery_id, event, body)
    if isinstance(row, str):
        return answer(400, row, "bad_request")
    try:
        # The store answers within intake.STORE_TIMEOUT_SECONDS, stored or not.
        await request.app[STORE_KEY](row)
    except StoreUnavailable:
        log.warning("delivery not stored: database unavailable",
                    extra={"delivery_id": delivery_id, "event": event})
        return answer(503, "database unavailable; GitHub can redeliver this delivery",
                      "unavailable")
    return answer(202, "accepted", "accepted")
