"""The fake GitHub's webhook side: deliveries it sends to the bot, logged as GitHub logs them."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp

from tests.fakes import payloads
from tests.fakes.github_state import GitHubState, HookDelivery

# What GitHub logs for an attempt that got no HTTP answer (refused, reset, timed out).
NO_ANSWER = 0
SEND_TIMEOUT = 10.0  # GitHub gives up on a delivery after 10 s


class FakeGitHubHooks:
    """Sends deliveries to `webhook_url`, signed with `webhook_secret`, as GitHub does, and
    keeps each attempt in the App's delivery log (`GET /app/hook/deliveries`)."""

    state: GitHubState

    def __init__(self) -> None:
        self.webhook_url: str | None = None  # the bot's /webhook; None: nobody listens
        self.webhook_secret: str = ""
        self._sending: set[asyncio.Task[None]] = set()

    async def send_webhook(self, event: str, payload: dict[str, Any], *,
                           guid: str | None = None) -> HookDelivery:
        """Deliver `payload` once, now; the attempt is logged with the answer it got."""
        delivery = self._attempt_of(event, payload, guid or str(uuid.uuid4()), False)
        await self._send(delivery)
        return delivery

    def redeliver_soon(self, original: HookDelivery) -> HookDelivery:
        """A new attempt of a logged delivery, sent in the background as GitHub does after
        answering 202 to `POST .../attempts`; `settle_webhooks()` waits for it."""
        attempt = self._attempt_of(original.event, original.payload or {}, original.guid, True)
        attempt.action, attempt.installation_id = original.action, original.installation_id
        attempt.repository_id = original.repository_id
        task = asyncio.get_running_loop().create_task(self._send(attempt))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        return attempt

    async def settle_webhooks(self) -> None:
        """Wait until every redelivery sent in the background has its answer."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def close_webhooks(self) -> None:
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)

    def hook_attempts(self, guid: str) -> list[HookDelivery]:
        """Every logged attempt of one delivery, oldest first."""
        return [d for d in self.state.deliveries if d.guid == guid]

    def _attempt_of(self, event: str, payload: dict[str, Any], guid: str,
                    redelivery: bool) -> HookDelivery:
        state = self.state
        installation = payload.get("installation") or {}
        repository = payload.get("repository") or {}
        attempt = HookDelivery(state.next_id(), guid, event, payload.get("action"), NO_ANSWER,
                               state.now(), redelivery, installation.get("id"),
                               repository.get("id"), payload)
        state.deliveries.append(attempt)
        return attempt

    async def _send(self, attempt: HookDelivery) -> None:
        if self.webhook_url is None:
            return  # logged as unanswered
        body = json.dumps(attempt.payload, separators=(",", ":")).encode()
        headers = payloads.webhook_headers(attempt.event, attempt.guid, body,
                                           self.webhook_secret)
        try:
            async with aiohttp.ClientSession() as session, session.post(
                    self.webhook_url, data=body, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT)) as response:
                await response.read()
                attempt.status_code = response.status
        except (aiohttp.ClientError, TimeoutError):
            attempt.status_code = NO_ANSWER
