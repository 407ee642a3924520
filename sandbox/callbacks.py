"""HTTP calls to the bot's internal API: events, the agent's session and the result, with
bounded retries."""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("sandbox.callbacks")

# Worth another try: the bot restarting, a proxy timing out, rate limiting.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class CallbackError(Exception):
    """A callback failed for good; `status` is the last HTTP status (None: no response)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in each pause."""

    attempts: int = 6
    base_seconds: float = 0.5
    max_pause_seconds: float = 8.0
    request_timeout_seconds: float = 30.0

    def pause(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try number `attempt + 1` (attempt counts from 1)."""
        ceiling = min(self.max_pause_seconds, self.base_seconds * 2 ** (attempt - 1))
        if retry_after is not None:
            # Honour the server's hint, but never wait longer than the policy allows.
            return min(self.max_pause_seconds, max(retry_after, 0.0))
        return random.uniform(0, ceiling)


EVENTS_POLICY = RetryPolicy(attempts=5, request_timeout_seconds=15.0)
RESULT_POLICY = RetryPolicy(attempts=7, request_timeout_seconds=60.0)


class CallbackClient:
    """Sends JSON to `{callback_url}/events` and `{callback_url}/result` with the run's token."""

    def __init__(self, callback_url: str, token: str, *, sleep: Any = time.sleep) -> None:
        self._base = callback_url.rstrip("/")
        self._token = token
        self._sleep = sleep

    def post_events(self, events: list[dict[str, Any]] | dict[str, Any],
                    policy: RetryPolicy = EVENTS_POLICY) -> int:
        """POST one event or a list of them; returns the HTTP status."""
        return self._send("POST", "/events", events, policy, accept={409})

    def put_result(self, result: dict[str, Any], policy: RetryPolicy = RESULT_POLICY) -> int:
        """PUT the result; 409 means the bot already has one, which counts as delivered."""
        return self._send("PUT", "/result", result, policy, accept={409})

    def get_session(self, policy: RetryPolicy = EVENTS_POLICY) -> bytes | None:
        """The earlier run's session archive this run may resume; None when the bot has
        none (404: never stored, expired, or not this run's to have)."""
        got: list[bytes] = []
        status = self._send("GET", "/session", None, policy, accept={404}, into=got)
        return got[0] if status == 200 and got else None

    def put_session(self, archive: bytes, policy: RetryPolicy = RESULT_POLICY) -> int:
        """PUT this run's session archive (before the result, which ends the run)."""
        return self._send("PUT", "/session", archive, policy, accept=set(),
                          content_type="application/gzip")

    def _send(self, method: str, path: str, body: Any, policy: RetryPolicy,
              accept: set[int], *, content_type: str = "application/json",
              into: list[bytes] | None = None) -> int:
        if body is None:
            data = None
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body, separators=(",", ":")).encode()
        url = self._base + path
        last_problem = "no attempt made"
        last_status: int | None = None
        for attempt in range(1, policy.attempts + 1):
            retry_after: float | None = None
            try:
                status = self._request(method, url, data, policy.request_timeout_seconds,
                                       content_type, into)
            except urllib.error.HTTPError as exc:
                status = exc.code
                retry_after = _retry_after(exc.headers.get("Retry-After"))
                exc.close()
            except (OSError, ValueError) as exc:
                # Connection refused, reset, DNS, timeouts: the bot may be restarting.
                last_status, last_problem = None, f"{type(exc).__name__}: {_reason(exc)}"
                log.warning("%s %s failed (attempt %d/%d): %s", method, path, attempt,
                            policy.attempts, last_problem)
                if attempt < policy.attempts:
                    self._sleep(policy.pause(attempt))
                continue
            if 200 <= status < 300 or status in accept:
                return status
            last_status, last_problem = status, f"HTTP {status}"
            if status not in RETRYABLE_STATUSES:
                raise CallbackError(f"{method} {path} refused with HTTP {status}", status)
            log.warning("%s %s answered HTTP %d (attempt %d/%d)", method, path, status,
                        attempt, policy.attempts)
            if attempt < policy.attempts:
                self._sleep(policy.pause(attempt, retry_after))
        raise CallbackError(f"{method} {path} failed after {policy.attempts} attempts: "
                            f"{last_problem}", last_status)

    def _request(self, method: str, url: str, data: bytes | None, timeout: float,
                 content_type: str = "application/json",
                 into: list[bytes] | None = None) -> int:
        headers = {"Authorization": f"Bearer {self._token}", "User-Agent": "agentbot-sandbox"}
        if data is not None:
            headers["Content-Type"] = content_type
        # The spec admits only http(s) callback URLs: no file: or custom scheme gets here.
        request = urllib.request.Request(url, data=data, method=method,  # noqa: S310
                                         headers=headers)
        # No proxy from the environment: the internal API is reached directly, and a proxy
        # variable set for the agent must not see the callback token. No redirects either:
        # urllib would resend the Authorization header to wherever a redirect points.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        with opener.open(request, timeout=timeout) as response:  # noqa: S310
            body = response.read()
            if into is not None:
                into[:] = [body]
            return int(response.status)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        return None  # the 3xx surfaces as an HTTPError, which is final


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or type(exc).__name__
