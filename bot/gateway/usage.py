"""Token usage read from model responses as they stream past, never holding a whole body."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

# One SSE event larger than this is dropped unread: real usage-bearing events are a few KiB
# (a Responses `response.completed` repeats the whole output, still far below), and a hostile
# upstream must not be able to grow the gateway's memory with one endless event.
EVENT_LIMIT = 1 << 20
# A JSON body is parsed only at its end, so it is held; past this size usage is given up on.
BODY_LIMIT = 8 << 20

ProviderKind = Literal["anthropic", "openai"]


@dataclass(frozen=True)
class Usage:
    """Tokens one response used; input_tokens excludes the cached input counted apart."""

    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        """The sum of two usages; the model is kept when both agree or only one names one."""
        if not isinstance(other, Usage):
            return NotImplemented
        if self.model is None or other.model is None or self.model == other.model:
            model = self.model if self.model is not None else other.model
        else:
            model = None  # tokens of several models: no one model to name
        return Usage(
            model=model,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )


class UsageMeter(Protocol):
    """Reads usage from a response body fed to it chunk by chunk."""

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the body."""

    def finish(self) -> Usage | None:
        """The usage the body reported, as far as it was read; None when it reported none."""

    @property
    def final(self) -> bool:
        """True once the event carrying the response's last usage has been read (the client
        may act on it before the stream ends: Codex sends its next request at once)."""


def meter(kind: ProviderKind, content_type: str | None) -> UsageMeter:
    """A meter for one response of a provider of `kind`, by the response's Content-Type."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    tally = _Tally()
    if media == "text/event-stream":
        read_event = _anthropic_event if kind == "anthropic" else _openai_event
        return _SseMeter(tally, read_event)
    if media == "application/json" or media.endswith("+json"):
        read_body = _anthropic_body if kind == "anthropic" else _openai_body
        return _JsonMeter(tally, read_body)
    return _NoMeter()


class _Tally:
    """Usage as read so far; fields stay None until a response reports them."""

    def __init__(self) -> None:
        self.model: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read_tokens: int | None = None
        self.cache_write_tokens: int | None = None
        self.final = False  # the response's last usage has been read

    def usage(self) -> Usage | None:
        counts = (self.input_tokens, self.output_tokens, self.cache_read_tokens,
                  self.cache_write_tokens)
        if all(count is None for count in counts):
            return None
        return Usage(
            model=self.model,
            input_tokens=self.input_tokens or 0,
            output_tokens=self.output_tokens or 0,
            cache_read_tokens=self.cache_read_tokens or 0,
            cache_write_tokens=self.cache_write_tokens or 0,
        )


def _count(value: Any) -> int | None:
    # A count is a non-negative int; bool is an int to Python but never a count.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _model(tally: _Tally, value: Any) -> None:
    if isinstance(value, str) and value:
        tally.model = value[:200]  # a name, not a place for an upstream to store a body


def _anthropic_usage(tally: _Tally, usage: Any) -> None:
    # Counts are cumulative: a later report replaces an earlier one, and a field a report
    # leaves out (or sends as null) keeps what came before.
    if not isinstance(usage, Mapping):
        return
    for field, key in (
        ("input_tokens", "input_tokens"),
        ("output_tokens", "output_tokens"),
        ("cache_read_tokens", "cache_read_input_tokens"),
        ("cache_write_tokens", "cache_creation_input_tokens"),
    ):
        count = _count(usage.get(key))
        if count is not None:
            setattr(tally, field, count)


def _openai_usage(tally: _Tally, usage: Any) -> None:
    # OpenAI counts cached input inside the input total (Responses: input_tokens, Chat
    # Completions: prompt_tokens), and so the input it wrote to the cache where it reports
    # that. Usage keeps them apart as Anthropic does: input_tokens is the uncached rest, and
    # the cached parts are cache_read_tokens and cache_write_tokens.
    if not isinstance(usage, Mapping):
        return
    if "input_tokens" in usage:
        total, output, details = (usage.get("input_tokens"), usage.get("output_tokens"),
                                  usage.get("input_tokens_details"))
    elif "prompt_tokens" in usage:
        total, output, details = (usage.get("prompt_tokens"), usage.get("completion_tokens"),
                                  usage.get("prompt_tokens_details"))
    else:
        return
    if not isinstance(details, Mapping):
        details = {}
    total_count = _count(total)
    if total_count is not None:
        read = min(_count(details.get("cached_tokens")) or 0, total_count)
        written = min(_count(details.get("cache_write_tokens")) or 0, total_count - read)
        tally.input_tokens = total_count - read - written
        tally.cache_read_tokens = read
        tally.cache_write_tokens = written
    output_count = _count(output)
    if output_count is not None:
        tally.output_tokens = output_count


def _anthropic_event(tally: _Tally, event: Mapping[str, Any]) -> None:
    kind = event.get("type")
    if kind == "message_start":
        message = event.get("message")
        if isinstance(message, Mapping):
            _model(tally, message.get("model"))
            _anthropic_usage(tally, message.get("usage"))
    elif kind == "message_delta":
        tally.final = True
        _anthropic_usage(tally, event.get("usage"))


# Responses events that end a response; each carries the response with its final usage.
_RESPONSE_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _openai_event(tally: _Tally, event: Mapping[str, Any]) -> None:
    kind = event.get("type")
    if isinstance(kind, str):
        if kind in _RESPONSE_ENDS:
            tally.final = True
            response = event.get("response")
            if isinstance(response, Mapping):
                _model(tally, response.get("model"))
                _openai_usage(tally, response.get("usage"))
        return
    # A Chat Completions chunk: only the last one (with stream_options.include_usage) has a
    # non-null usage; every one names the model.
    _model(tally, event.get("model"))
    if isinstance(event.get("usage"), Mapping):
        tally.final = True
    _openai_usage(tally, event.get("usage"))


def _anthropic_body(tally: _Tally, body: Mapping[str, Any]) -> None:
    _model(tally, body.get("model"))
    _anthropic_usage(tally, body.get("usage"))


def _openai_body(tally: _Tally, body: Mapping[str, Any]) -> None:
    _model(tally, body.get("model"))
    _openai_usage(tally, body.get("usage"))


class _NoMeter:
    """For bodies that carry no usage (files, audio, plain text)."""

    final = False

    def feed(self, chunk: bytes) -> None:
        pass

    def finish(self) -> Usage | None:
        return None


class _JsonMeter:
    """Holds a JSON body up to BODY_LIMIT and reads usage from it once it is complete."""

    def __init__(self, tally: _Tally, read: Callable[[_Tally, Mapping[str, Any]], None]) -> None:
        self._tally = tally
        self._read = read
        self._body = bytearray()
        self._over = False
        self.final = False  # a JSON body is whole only at its end

    def feed(self, chunk: bytes) -> None:
        if self._over:
            return
        if len(self._body) + len(chunk) > BODY_LIMIT:
            self._over = True
            self._body = bytearray()
            return
        self._body += chunk

    def finish(self) -> Usage | None:
        if self._over or not self._body:
            return None
        try:
            body = orjson.loads(self._body)
        except orjson.JSONDecodeError:
            return None  # cut short or not JSON: no usage rather than a guess
        finally:
            self._body = bytearray()
        if isinstance(body, Mapping):
            self._read(self._tally, body)
        return self._tally.usage()


# What the standard calls an event that names no type.
_UNNAMED = "message"


class SseParser:
    """Server-sent events from bytes fed in arbitrary pieces, after the HTML standard's rules.

    Lines end in CRLF, LF or CR; `:` lines are comments; `data:` lines join with LF; a blank
    line ends an event. An event past `limit` bytes is skipped to its end, so memory stays
    bounded whatever the upstream sends. An event unfinished at the end is dropped, as the
    standard says.

    A meter wants a few events of thousands. Given `keywords` (called for the words that
    matter now), the parser looks only at the events that contain one of them, found by
    searching the bytes, and drops the rest whole without cutting them apart; `wanted` (given
    an event's raw bytes) then decides for each whether it is parsed at all.
    """

    def __init__(self, limit: int = EVENT_LIMIT,
                 wanted: Callable[[bytes], bool] | None = None,
                 keywords: Callable[[], tuple[bytes, ...]] | None = None) -> None:
        self._limit = limit
        self._wanted = wanted
        self._keywords = keywords
        self._buffer = bytearray()  # the event still being received, newlines made LF
        self._skipping = False  # dropping an oversized event up to its end
        self._after_cr = False  # the last piece ended in CR: an LF opening the next is its pair

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        """The events (name, data) completed by these bytes."""
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        if not chunk:
            return []
        self._after_cr = chunk.endswith(b"\r")
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer
        buffer += chunk
        events: list[tuple[str, bytes]] = []
        start = 0
        if self._skipping:
            end = buffer.find(b"\n\n")
            if end < 0:
                self._cap(buffer)
                return events
            self._skipping = False
            start = end + 2
        if self._keywords is not None:
            start = self._search(buffer, start, events)
        else:
            while (end := buffer.find(b"\n\n", start)) >= 0:
                self._take(buffer, start, end, events)
                start = end + 2
        del buffer[:start]
        self._cap(buffer)
        return events

    def _search(self, buffer: bytearray, start: int, events: list[tuple[str, bytes]]) -> int:
        """Take the complete events that hold a keyword; where the next event begins."""
        last = buffer.rfind(b"\n\n", start)
        if last < 0:
            return start
        assert self._keywords is not None
        keywords = self._keywords()
        position = start
        while True:
            hits = [hit for word in keywords if (hit := buffer.find(word, position, last)) >= 0]
            if not hits:
                break
            hit = min(hits)
            begin = buffer.rfind(b"\n\n", position, hit)
            begin = position if begin < 0 else begin + 2
            end = buffer.find(b"\n\n", hit)
            self._take(buffer, begin, end, events)
            position = end + 2
        return last + 2

    def _take(self, buffer: bytearray, start: int, end: int,
              events: list[tuple[str, bytes]]) -> None:
        if end - start <= self._limit:
            block = bytes(buffer[start:end])
            if self._wanted is None or self._wanted(block):
                self._read(block, events)

    def _cap(self, buffer: bytearray) -> None:
        if len(buffer) > self._limit:
            # Too long to be an event we keep: drop it up to its end. The last byte stays,
            # as a LF there may be the first half of the blank line that ends it.
            self._skipping = True
            del buffer[:-1]

    @staticmethod
    def _read(block: bytes, events: list[tuple[str, bytes]]) -> None:
        name, data = _UNNAMED, []
        for line in block.split(b"\n"):
            if not line or line.startswith(b":"):
                continue  # a blank left by a run of blank lines, or a comment
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"event":
                name = value.decode("utf-8", "replace")
            # `id` and `retry` steer reconnection, which a meter does not do.
        if data:
            events.append((name, b"\n".join(data)))


class _SseMeter:
    """Reads usage from each complete event of an SSE stream as it arrives."""

    def __init__(self, tally: _Tally, read: Callable[[_Tally, Mapping[str, Any]], None]) -> None:
        self._tally = tally
        self._read = read
        self._parser = SseParser(wanted=self._wanted, keywords=self._keywords)

    def _wanted(self, event: bytes) -> bool:
        # Only usage and the model are read: an event without either word holds neither
        # (a word inside a text delta only costs a parse that finds nothing).
        return b"usage" in event or (self._tally.model is None and b"model" in event)

    def _keywords(self) -> tuple[bytes, ...]:
        # Most events of a stream are text deltas that name neither: a search skips them.
        return (b"usage",) if self._tally.model is not None else (b"usage", b"model")

    def feed(self, chunk: bytes) -> None:
        for _name, data in self._parser.feed(chunk):
            # Every usage-bearing event also says what it is in its JSON `type` (or is a
            # Chat Completions chunk, which has no event name), so the data alone decides.
            if data == b"[DONE]":
                continue  # Chat Completions' end sentinel
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, Mapping):
                self._read(self._tally, event)

    def finish(self) -> Usage | None:
        return self._tally.usage()

    @property
    def final(self) -> bool:
        return self._tally.final
