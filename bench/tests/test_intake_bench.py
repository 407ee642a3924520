"""The benchmark harness itself: payload, wrk script, summary parsing, verdicts, one short run."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from gidgethub import sansio

from bench import databases, loadgen, payload, report, servers

REPO = Path(__file__).resolve().parents[2]
needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


def test_payload_is_a_valid_12_kb_issues_labeled_delivery() -> None:
    data = payload.issues_labeled()
    body = payload.encode(data)
    assert 11_500 <= len(body) <= 13_500
    assert payload.schema_errors(data) == []
    assert data["label"]["name"] == "bug" and data["issue"]["labels"][-1] == data["label"]
    assert data["installation"]["id"] > 0 and data["sender"]["type"] == "User"


def test_schema_check_catches_a_broken_payload() -> None:
    data = payload.issues_labeled()
    del data["issue"]["number"]
    data["action"] = "opened"
    errors = payload.schema_errors(data)
    assert any(e.startswith("action:") for e in errors)
    assert any("'number' is a required property" in e for e in errors)


def test_signature_matches_githubs_test_vector_and_gidgethub() -> None:
    assert payload.sign(b"Hello, World!", "It's a Secret to Everybody") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    body = payload.encode(payload.issues_labeled())
    sansio.validate_event(body, signature=payload.sign(body, "s3cret"), secret="s3cret")


def test_summary_parsing_and_in_flight() -> None:
    stdout = (
        "Running 1s test @ http://127.0.0.1:1/webhook\n"
        '{"duration_us":2000000,"requests":100,"sent":133,"bytes":1,'
        '"errors":{"connect":0,"read":0,"write":0,"status":3,"timeout":0},'
        '"statuses":{"202":97,"503":3},'
        '"latency_us":{"mean":1500.0,"stdev":1.0,"max":9000,"p50":1200,"p90":2000,'
        '"p99":4000,"p999":8000}}\n'
    )
    load = loadgen.parse_summary(stdout, "abcd0123")
    assert load.statuses == {202: 97, 503: 3}
    assert load.rate(202) == 48.5
    assert load.latency_ms["p99"] == 4.0
    assert load.in_flight == 32  # one request() call is wrk's own pipelining probe
    with pytest.raises(loadgen.LoadError):
        loadgen.parse_summary("Running 1s test\nPANIC: unprotected error\n", "x")


def _row(target: str, rate: float, p99: float, problems: list[str] | None = None) -> report.Row:
    load = loadgen.Load("p", 1.0, int(rate), int(rate), {200 if target == "probot" else 202:
                                                          int(rate)}, {},
                        {"p50": 1.0, "p90": 2.0, "p99": p99, "p999": p99, "max": p99})
    return report.Row(target, "s", 200 if target == "probot" else 202, load, 1.0, 0.0,
                      problems=problems or [])


def test_verdicts_use_medians_and_both_conditions() -> None:
    rows = [_row("probot", 1000, 10.0), _row("probot", 5000, 10.0), _row("probot", 1100, 12.0),
            _row("agentbot-sqlite", 1650, 9.0), _row("agentbot-postgres", 1700, 12.5),
            _row("aiohttp-baseline", 3000, 2.0)]
    met, missed, ceiling = report.verdicts(rows)
    assert ceiling.startswith("aiohttp-baseline: 3,000/s = 2.73x") and "ceiling" in ceiling
    assert met.startswith("agentbot-sqlite: 1,650/s = 1.50x") and met.endswith("target met")
    assert "p99 12.50 ms vs Probot's 10.00 ms" in missed and missed.endswith("MISSED")
    rows[3].problems.append("stored 1 deliveries for 2 accepted")
    assert report.verdicts(rows)[0].endswith("MISSED")


@needs_wrk
async def test_wrk_script_sends_unique_signed_deliveries(tmp_path: Path) -> None:
    seen: list[str] = []
    body = payload.encode(payload.issues_labeled())
    signature = payload.sign(body, "s3cret")

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        sansio.validate_event(raw, signature=request.headers["X-Hub-Signature-256"],
                              secret="s3cret")
        assert request.headers["X-GitHub-Event"] == "issues"
        seen.append(request.headers["X-GitHub-Delivery"])
        # Every fifth answer is a 503, to see that the script counts statuses apart.
        return web.Response(status=503 if len(seen) % 5 == 0 else 202)

    app = web.Application()
    app.router.add_post("/webhook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = servers.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    body_file = tmp_path / "body.json"
    body_file.write_bytes(body)
    try:
        load = await asyncio.to_thread(
            loadgen.run_wrk, f"http://127.0.0.1:{port}/webhook", body_file=body_file,
            signature=signature, prefix="0badcafe", event="issues", seconds=1,
            connections=4, threads=1, cpu="0-1")
    finally:
        await runner.cleanup()
    assert load.completed > 50
    assert len(set(seen)) == len(seen)  # unique, including any answered after the deadline
    assert all(d.startswith("0badcafe-0001-4000-8000-") and len(d) == 36 for d in seen)
    assert load.statuses[503] == pytest.approx(load.completed / 5, abs=2)
    assert sum(load.statuses.values()) == load.completed
    assert load.completed <= len(seen) <= load.completed + load.in_flight


def test_postgres_database_is_created_and_dropped() -> None:
    import asyncpg

    async def exists(name: str) -> bool:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        try:
            return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1",
                                            name))
        finally:
            await conn.close()

    try:
        asyncio.run(exists("test"))
    except OSError:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    with databases.postgres() as database:
        name = database.url.rsplit("/", 1)[1]
        assert database.url.startswith("postgresql+asyncpg://postgres@127.0.0.1:5432/")
        assert name.startswith("agentbot_bench_") and asyncio.run(exists(name))
    assert not asyncio.run(exists(name))


@needs_wrk
def test_a_short_run_against_the_real_agentbot_stores_every_accepted_delivery(
        tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.intake", "--targets", "agentbot-sqlite",
         "--duration", "1", "--warmup", "1", "--connections", "8", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    (row,) = figures["rows"]
    assert row["problems"] == [] and row["rate"] > 0
    assert row["accepted"] <= row["stored"] <= row["accepted"] + row["in_flight"]
    assert "| agentbot-sqlite | SQLite" in done.stdout
