"""The gateway benchmark itself: its answer is a valid stream, and one small run measures."""

from __future__ import annotations

from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from bench import gateway as bench
from bot.gateway.usage import SseParser, meter


def test_the_answer_is_a_valid_anthropic_stream_of_4000_tokens() -> None:
    body = b"".join(bench.answer_events())
    events = SseParser(limit=1 << 20).feed(body)
    adapter = TypeAdapter(RawMessageStreamEvent)
    parsed = [adapter.validate_json(data) for _name, data in events]
    assert [e.type for e in parsed].count("content_block_delta") == bench.TOKENS
    usage_meter = meter("anthropic", "text/event-stream")
    usage_meter.feed(body)
    usage = usage_meter.finish()
    assert usage is not None and usage.output_tokens == bench.TOKENS


async def test_a_small_run_measures_both_paths_alike() -> None:
    rows = await bench.run(streams=2, requests=4, rounds=1, chunk=200, interval_ms=0)
    assert [r.path for r in rows] == ["direct", "gateway"]
    direct, through = rows
    assert direct.cpu_ms_per_mb is None and through.cpu_ms_per_mb is not None
    assert through.cpu_ms_per_mb > 0 and direct.mb_per_s > 0 and through.mb_per_s > 0
