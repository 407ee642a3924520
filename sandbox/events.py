"""Progress events: their shapes, secret redaction, and a background sender that batches them."""

from __future__ import annotations

import collections
import datetime
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from sandbox.callbacks import CallbackClient, CallbackError

log = logging.getLogger("sandbox.events")

KINDS = ("phase", "log", "todo", "tool", "message")
MAX_TEXT = 4000  # characters of one log line, message or tool output
MAX_TODO_ITEMS = 100
MAX_BATCH_BYTES = 256 * 1024  # the bot takes at most 1 MiB per request
REDACTED = "[redacted]"


@dataclass(frozen=True)
class Event:
    """One progress event before it gets its sequence number and timestamp."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


def truncate(text: str, limit: int = MAX_TEXT) -> str:
    """`text` cut to `limit` characters, with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"… [{len(text) - limit} more characters]"


def phase(name: str, status: str, **extra: Any) -> Event:
    """A step of the run started, succeeded, failed or timed out."""
    return Event("phase", {"phase": name, "status": status, **extra})


def log_line(source: str, stream: str, text: str) -> Event:
    """One line of output from setup, the agent or the runner itself."""
    return Event("log", {"source": source, "stream": stream, "text": truncate(text)})


def message(text: str) -> Event:
    """Text the agent addressed to the user."""
    return Event("message", {"text": truncate(text)})


def todo(items: list[dict[str, str]]) -> Event:
    """The agent's whole plan as it stands now: [{text, status}] with pending|in_progress|..."""
    kept = [{"text": truncate(item["text"], 500), "status": item["status"]}
            for item in items[:MAX_TODO_ITEMS]]
    return Event("todo", {"items": kept, **({"more": len(items) - len(kept)}
                                             if len(items) > len(kept) else {})})


def tool(name: str, status: str, *, call_id: str | None = None, input: str | None = None,
         output: str | None = None, **extra: Any) -> Event:
    """A tool call by the agent: started, then completed or failed."""
    data: dict[str, Any] = {"name": name, "status": status}
    if call_id:
        data["id"] = call_id
    if input:
        data["input"] = truncate(input, 1000)
    if output:
        data["output"] = truncate(output, 2000)
    data.update(extra)
    return Event("tool", data)


class Redactor:
    """Replaces every secret string in text or nested JSON values with a marker."""

    def __init__(self, secrets: list[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def now_iso() -> str:
    """The current UTC time as RFC 3339 with milliseconds."""
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventSink:
    """Numbers events and sends them in batches from a thread, so a slow bot never stalls a run.

    Events are best effort: when the bot refuses them for good, or the queue overflows, they
    are dropped (the result is what matters, and it is sent separately).
    """

    def __init__(self, client: CallbackClient, redactor: Redactor, *, batch_size: int = 50,
                 max_queue: int = 5000, interval: float = 0.3) -> None:
        self._client = client
        self._redactor = redactor
        self._batch_size = batch_size
        self._max_queue = max_queue
        self._interval = interval
        self._queue: collections.deque[tuple[int, dict[str, Any]]] = collections.deque()
        self._cond = threading.Condition()
        self._seq = 0
        self._in_flight = 0
        self._closing = False
        self._disabled = False
        self._single = False  # set when the bot refused a batch: fall back to one per request
        self.dropped = 0
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="event-sink", daemon=True)
        self._thread.start()

    def emit(self, event: Event) -> None:
        """Queue one event; never blocks on the network."""
        with self._cond:
            self._seq += 1
            if self._disabled or len(self._queue) >= self._max_queue:
                self.dropped += 1
                return
            data = self._redactor.value(event.data)
            self._queue.append((len(json.dumps(data)), {"seq": self._seq, "ts": now_iso(),
                                                        "kind": event.kind, "data": data}))
            self._cond.notify()

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event was sent (or dropped); False if time ran out."""
        with self._cond:
            self._cond.notify_all()
            return self._cond.wait_for(lambda: not self._queue and not self._in_flight, timeout)

    def close(self, timeout: float) -> None:
        """Flush, then stop the sender thread."""
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing, self._interval)
                if not self._queue:
                    if self._closing:
                        return
                    continue
                batch = self._take()
                self._in_flight = len(batch)
            try:
                self._send(batch)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _take(self) -> list[dict[str, Any]]:
        """The next batch: up to the batch size, and under the byte bound unless it is one."""
        limit = 1 if self._single else self._batch_size
        batch: list[dict[str, Any]] = []
        total = 0
        while self._queue and len(batch) < limit:
            size, event = self._queue[0]
            if batch and total + size > MAX_BATCH_BYTES:
                break
            self._queue.popleft()
            batch.append(event)
            total += size
        return batch

    def _send(self, batch: list[dict[str, Any]]) -> None:
        try:
            self._client.post_events(batch if len(batch) > 1 or not self._single else batch[0])
            self.sent += len(batch)
        except CallbackError as exc:
            if len(batch) > 1 and exc.status in (400, 415, 422):
                log.warning("the bot refused a batch of events; sending them one by one")
                self._single = True
                for event in batch:
                    self._send([event])
                return
            self.dropped += len(batch)
            if exc.status in (401, 403, 404, 410):
                # The run is gone or the token is wrong: nothing later will get through.
                log.warning("events refused for good (%s); no more events are sent", exc)
                with self._cond:
                    self._disabled = True
                    self.dropped += len(self._queue)
                    self._queue.clear()
            else:
                log.warning("dropped %d events: %s", len(batch), exc)
