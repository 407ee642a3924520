"""The floor under any aiohttp intake: check the signature, answer 202, store nothing."""

from __future__ import annotations

import hashlib
import hmac
import os
import sys

import uvloop
from aiohttp import web

ACCEPTED = b'{"message":"accepted"}'


def make_app(secret: str) -> web.Application:
    """An app whose /webhook only reads the body and compares its HMAC in constant time."""
    key = secret.encode()

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
            return web.Response(status=401)
        return web.Response(status=202, body=ACCEPTED, content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> int:
    """Serve on PORT with WEBHOOK_SECRET, on uvloop as `agentbot serve` runs."""
    app = make_app(os.environ["WEBHOOK_SECRET"])
    web.run_app(app, host="127.0.0.1", port=int(os.environ["PORT"]), access_log=None,
                print=None, backlog=1024, loop=uvloop.new_event_loop())
    return 0


if __name__ == "__main__":
    sys.exit(main())
