"""Reading token usage from provider responses fed in pieces: SSE streams and JSON bodies."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.gateway import usage as usage_module
from bot.gateway.usage import SseParser, Usage, meter
from tests.gateway.upstream import (
    ANTHROPIC_MODEL,
    JSON_TYPE,
    OPENAI_MODEL,
    SSE_TYPE,
    Event,
    anthropic_events,
    anthropic_message,
    chat_completion,
    chat_events,
    chat_usage,
    responses_events,
    responses_usage,
    sse,
)

CHAT_MODEL = "gpt-4o-mini-2024-07-18"

# Three recorded streams and the usage each reports.
STREAMS: dict[str, tuple[str, list[Event], Usage]] = {
    "anthropic": ("anthropic",
                  anthropic_events(["Hel", "lo"], input_tokens=25, output_tokens=15,
                                   cache_read=300, cache_write=40),
                  Usage(ANTHROPIC_MODEL, 25, 15, 300, 40)),
    "responses": ("openai",
                  responses_events(["Hel", "lo"], input_tokens=2006, output_tokens=300,
                                   cached=1920),
                  Usage(OPENAI_MODEL, 86, 300, 1920, 0)),
    "chat": ("openai", chat_events(["Hel", "lo"], chat_usage(1200, 40, cached=1024)),
             Usage(CHAT_MODEL, 176, 40, 1024, 0)),
}


def stream_bytes(name: str, newline: str = "\n") -> bytes:
    return b"".join(sse(STREAMS[name][1], newline=newline))


def read(kind: Any, content_type: str, *chunks: bytes) -> Usage | None:
    usage_meter = meter(kind, content_type)
    for chunk in chunks:
        usage_meter.feed(chunk)
    return usage_meter.finish()


def test_usages_add_up() -> None:
    total = Usage("m", 1, 2, 3, 4) + Usage("m", 10, 20, 30, 40)
    assert total == Usage("m", 11, 22, 33, 44)
    assert (Usage("m", 1) + Usage(None, 1)).model == "m"
    assert (Usage("a", 1) + Usage("b", 1)).model is None
    assert Usage() + Usage() == Usage()


@pytest.mark.parametrize("name", list(STREAMS))
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_each_stream_reports_its_usage(name: str, newline: str) -> None:
    kind, _, expected = STREAMS[name]
    assert read(kind, SSE_TYPE, stream_bytes(name, newline)) == expected


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(list(STREAMS)), newline=st.sampled_from(["\n", "\r\n", "\r"]),
       data=st.data())
def test_a_stream_split_anywhere_reports_the_same_usage(name: str, newline: str,
                                                        data: st.DataObject) -> None:
    kind, _, expected = STREAMS[name]
    body = stream_bytes(name, newline)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=40)))
    pieces = [body[start:end] for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert read(kind, SSE_TYPE, *pieces) == expected


def test_a_stream_fed_byte_by_byte_reports_the_same_usage() -> None:
    body = stream_bytes("anthropic", "\r\n")
    assert read("anthropic", SSE_TYPE, *(body[i:i + 1] for i in range(len(body)))) == \
        STREAMS["anthropic"][2]


def test_json_bodies() -> None:
    message = json.dumps(anthropic_message("hi", 12, 6, cache_read=7, cache_write=3)).encode()
    assert read("anthropic", "application/json", message[:10], message[10:]) == \
        Usage(ANTHROPIC_MODEL, 12, 6, 7, 3)
    completion = json.dumps(chat_completion("hi", chat_usage(100, 5, cached=64))).encode()
    assert read("openai", "application/json; charset=utf-8", completion) == \
        Usage(CHAT_MODEL, 36, 5, 64, 0)
    response = json.dumps({"object": "response", "model": OPENAI_MODEL,
                           "usage": responses_usage(50, 9, cached=20)}).encode()
    assert read("openai", JSON_TYPE, response) == Usage(OPENAI_MODEL, 30, 9, 20, 0)


def test_bodies_without_usage_report_none() -> None:
    assert read("anthropic", JSON_TYPE, b'{"type":"error","error":{"type":"x"}}') is None
    assert read("openai", JSON_TYPE, b'{"object":"list","data":[]}') is None
    assert read("openai", JSON_TYPE, b'{"model": "m", "usage": {"prompt') is None  # cut short
    assert read("openai", JSON_TYPE, b"[1, 2]") is None
    assert read("openai", JSON_TYPE) is None
    assert read("openai", "audio/mpeg", b'{"usage": {"prompt_tokens": 1}}') is None
    assert read("openai", SSE_TYPE, *sse(chat_events(["x"], None))) is None


def test_a_json_body_past_the_limit_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage_module, "BODY_LIMIT", 1000)
    body = json.dumps(anthropic_message("x" * 2000)).encode()
    assert read("anthropic", JSON_TYPE, body[:500], body[500:]) is None


def test_anthropic_message_delta_counts_replace_the_starts() -> None:
    events = anthropic_events(["x"], input_tokens=10, output_tokens=3)
    # Newer servers repeat the cumulative input counts at the end; a null leaves the start's.
    events[-2][1]["usage"].update(input_tokens=12, cache_read_input_tokens=None,
                                  cache_creation_input_tokens=5)
    assert read("anthropic", SSE_TYPE, *sse(events)) == Usage(ANTHROPIC_MODEL, 12, 3, 0, 5)


def test_a_stream_cut_before_its_end_reports_what_came() -> None:
    events = anthropic_events(["x", "y"], input_tokens=40, output_tokens=9)
    frames = sse(events)
    # message_start and a few more, then half of message_delta's frame.
    cut = b"".join(frames[:4]) + frames[-2][:30]
    assert read("anthropic", SSE_TYPE, cut) == Usage(ANTHROPIC_MODEL, 40, 1)
    # A Responses stream reports usage only at its end.
    assert read("openai", SSE_TYPE, *sse(responses_events(["x"])[:-1])) is None


def test_an_incomplete_response_still_counts() -> None:
    events = responses_events(["x"], input_tokens=30, output_tokens=8)
    _, last = events[-1]
    events[-1] = ("response.incomplete", {**last, "type": "response.incomplete"})
    assert read("openai", SSE_TYPE, *sse(events)) == Usage(OPENAI_MODEL, 30, 8)


def test_garbage_is_ignored() -> None:
    kind, events, expected = STREAMS["anthropic"]
    junk = [
        b": a comment\n\n",
        b"data: {not json\n\n",
        b"data: [1,2,3]\n\n",
        b"data: \xff\xfe\n\n",
        b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":7}\n\n",
        b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":\"9\"}}\n\n",
        b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-4}}\n\n",
        b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":true}}\n\n",
        b"retry: 10\nid: 4\nunknown-field: x\nnocolon\n\n",
        b"\n\n\n",
    ]
    frames = sse(events)
    mixed = [frames[0], *junk, *frames[1:], *junk]
    assert read(kind, SSE_TYPE, *mixed) == expected


def test_multi_line_data_is_joined() -> None:
    body = (b"event: message_start\n"
            b'data: {"type": "message_start",\n'
            b'data:  "message": {"model": "m", "usage": {"input_tokens": 3, "output_tokens": 1}}}\n'
            b"\n")
    assert read("anthropic", SSE_TYPE, body) == Usage("m", 3, 1)


def test_the_parser_names_events_and_waits_for_their_end() -> None:
    parser = SseParser()
    assert parser.feed(b"event: ping\ndata: a\ndata:b\n\ndata: c\n\n") == [
        ("ping", b"a\nb"), ("message", b"c")]
    assert parser.feed(b"data: not ended yet\n") == []
    assert parser.feed(b"\n") == [("message", b"not ended yet")]
    assert parser.feed(b"event: x\n\n") == []  # no data: no event


def test_an_oversized_event_is_skipped_and_the_next_one_read() -> None:
    parser = SseParser(limit=100)
    huge_line = b"data: " + b"x" * 500 + b"\n\n"
    many_lines = b"data: xxxxxxxxxx\n" * 20 + b"\n"
    after = b"data: fine\n\n"
    assert parser.feed(huge_line + many_lines + after) == [("message", b"fine")]
    # The same, in pieces that split the oversized line.
    parser = SseParser(limit=100)
    events = []
    for piece in (huge_line[:50], huge_line[50:300], huge_line[300:], after):
        events += parser.feed(piece)
    assert events == [("message", b"fine")]


def test_an_endless_event_does_not_grow_memory() -> None:
    usage_meter = meter("anthropic", SSE_TYPE)
    chunk = b"x" * 65536
    tracemalloc.start()
    try:
        usage_meter.feed(b"data: ")
        for _ in range(256):  # 16 MiB in one line that never ends
            usage_meter.feed(chunk)
        for _ in range(256):  # and 16 MiB more of data lines in one event
            usage_meter.feed(b"data: " + chunk + b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * usage_module.EVENT_LIMIT
    for frame in sse(STREAMS["anthropic"][1]):
        usage_meter.feed(b"\n" + frame)
    assert usage_meter.finish() == STREAMS["anthropic"][2]


def test_cached_tokens_never_exceed_the_input() -> None:
    body = {"model": "m", "usage": {"prompt_tokens": 10, "completion_tokens": 1,
                                    "prompt_tokens_details": {"cached_tokens": 50}}}
    assert read("openai", JSON_TYPE, json.dumps(body).encode()) == Usage("m", 0, 1, 10, 0)


@settings(max_examples=150, deadline=None)
@given(blocks=st.lists(st.sampled_from([
    b"event: content_block_delta\ndata: {\"text\": \"word\"}\n\n",
    b"data: {\"usage\": {\"output_tokens\": 3}}\n\n",
    b": a comment\n\n\n",
    b"data: " + b"y" * 150 + b" usage\n\n",  # oversized, with the word in it
    b"data: " + b"z" * 150 + b"\n\n",  # oversized, without
    b"data: mod\nel\n\n",
]), max_size=30), data=st.data())
def test_dropping_unwanted_events_whole_changes_nothing(blocks: list[bytes],
                                                        data: st.DataObject) -> None:
    body = b"".join(blocks)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=20)))
    pieces = [body[start:end] for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True)]

    def wanted(event: bytes) -> bool:
        return b"usage" in event

    every = SseParser(limit=100, wanted=wanted)
    fast = SseParser(limit=100, wanted=wanted, keywords=lambda: (b"usage",))
    assert [e for p in pieces for e in every.feed(p)] == [e for p in pieces for e in fast.feed(p)]
