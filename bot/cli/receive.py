"""`agentbot receive`: one payload through the same pipeline as a webhook, then a report."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import or_, select

from bot.app import BOT_KEY, Bot, gateway_app, internal_app, start_bot, stop_bot
from bot.cli.dryrun import RecordingGitHub
from bot.config import providers
from bot.config.settings import Settings
from bot.executors.base import SandboxSecrets
from bot.executors.manifests import render_dry_run
from bot.gateway.tokens import READ_PERMISSIONS
from bot.intake.writer import DeliveryRow
from bot.runs import launch
from bot.runs.ledger import get_run
from bot.store.tables import (
    FINAL_STATES,
    RunState,
    deliveries,
    run_groups,
    run_transitions,
    runs,
)

# Past the run's own time limit, how long `receive` waits for publishing and reporting.
FOLLOW_SLACK_SECONDS = 300
FOLLOW_POLL_SECONDS = 0.2
# Stands in for secret values in dry-run output; render_dry_run redacts them again anyway.
REDACTED = "<redacted>"


class ReceiveError(Exception):
    """The payload cannot be received; the message says why."""


def _load(path: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise ReceiveError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ReceiveError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReceiveError(f"{path} is not a JSON object")
    return body, data


async def receive(settings: Settings, event: str, payload: Path, *, dry_run: bool,
                  delivery_id: str) -> str:
    """Store and dispatch one delivery; return what happened as text."""
    body, data = _load(payload)
    with tempfile.TemporaryDirectory(prefix="agentbot-dry-run-") as scratch:
        return await _receive(settings, event, body, data, dry_run=dry_run,
                              delivery_id=delivery_id, scratch=Path(scratch))


async def _receive(settings: Settings, event: str, body: bytes, data: dict[str, Any], *,
                   dry_run: bool, delivery_id: str, scratch: Path) -> str:
    recorder = None
    if dry_run:
        # Nothing touches the real database or GitHub: a private ledger in a scratch file
        # (not an in-memory database, which is one connection that the intake's writer
        # and everything else would share, transactions and all).
        update: dict[str, object] = {"database_url": f"sqlite+aiosqlite:///{scratch / 'ledger.db'}"}
        if providers.configured(settings) in (None, frozenset()):
            # Nor does it need a model key: with none given, it assumes the gateway has each.
            update["model_providers"] = ",".join(providers.PROVIDERS)
        settings = settings.model_copy(update=update)
        recorder = RecordingGitHub(payload=data)
    bot = Bot(settings=settings, github=recorder)
    await start_bot(bot)
    try:
        assert bot.inbox is not None and bot.writer is not None and bot.engine is not None
        await bot.inbox.close()  # drained by hand below, not by the background loop
        installation = data.get("installation")
        await bot.writer.store(DeliveryRow(
            delivery_id=delivery_id, event=event,
            action=data.get("action") if isinstance(data.get("action"), str) else None,
            installation_id=installation.get("id") if isinstance(installation, dict) else None,
            payload=body))
        await bot.inbox.drain_once()
        report = await _report(bot, delivery_id, recorder)
        if not dry_run:
            report += await _follow(bot, delivery_id)
        return report
    finally:
        await stop_bot(bot)


async def _follow(bot: Bot, delivery_id: str) -> str:
    """Run what the delivery queued to its end, as `serve` would, and say how it ended."""
    assert bot.engine is not None
    async with bot.engine.connect() as conn:
        # A request for variants made a group: its runs are the ones to follow.
        group = select(run_groups.c.id).where(run_groups.c.delivery_id == delivery_id)
        found = (await conn.execute(select(runs.c.id, runs.c.timeout_seconds).where(or_(
            runs.c.delivery_id == delivery_id, runs.c.group_id.in_(group.scalar_subquery())))
            .order_by(runs.c.id))).all()
    run_ids = [row.id for row in found]
    if not found:
        return ""
    public = web.Application()
    public[BOT_KEY] = bot
    runners: list[web.AppRunner] = []
    if bot.settings.executor_name == "local":
        # The sandbox's gateway, as `serve` runs it beside the local executor.
        gateway = web.AppRunner(gateway_app(public), access_log=None)
        await gateway.setup()
        runners.append(gateway)
    # The internal API takes the sandbox's events and result; its start-up launches the
    # scheduler and the reporter, exactly as in `serve`.
    runner = web.AppRunner(internal_app(public), access_log=None)
    await runner.setup()
    runners.append(runner)
    try:
        if len(runners) == 2:
            await web.TCPSite(runners[0], bot.settings.host, bot.settings.gateway_port).start()
        await web.TCPSite(runner, bot.settings.host, bot.settings.internal_port).start()
        limit = max(int(row.timeout_seconds) for row in found) + FOLLOW_SLACK_SECONDS
        async with asyncio.timeout(limit):
            # The run moves in other tasks' database writes: polling is the simple way to see.
            while not await _all_reported(bot, run_ids):  # noqa: ASYNC110
                await asyncio.sleep(FOLLOW_POLL_SECONDS)
    except TimeoutError:
        return "\n\n# outcome\nthe run did not finish in time; `agentbot serve` carries it on"
    finally:
        for each in reversed(runners):
            await each.cleanup()
    lines = ["", "", "# outcome"]
    for run_id in run_ids:
        run = await get_run(bot.engine, run_id)
        assert run is not None
        line = f"run #{run.id}: {run.state}"
        if run.pr_url:
            line += f", pull request {run.pr_url}"
        elif run.commit_sha:
            line += f", commit {run.commit_sha} on {run.branch}"
        if run.error:
            line += f"\n{run.error}"
        lines.append(line)
    return "\n".join(lines)


async def _all_reported(bot: Bot, run_ids: list[int]) -> bool:
    assert bot.engine is not None
    for run_id in run_ids:
        run = await get_run(bot.engine, run_id)
        if run is None or run.last_reported_state != run.state:
            return False
        # A run that waits for a maintainer's approval is as far as one payload takes it.
        if RunState(run.state) not in (*FINAL_STATES, RunState.AWAITING_APPROVAL):
            return False
    return True


async def _report(bot: Bot, delivery_id: str, recorder: RecordingGitHub | None) -> str:
    assert bot.engine is not None
    lines: list[str] = ["# decisions"]
    async with bot.engine.connect() as conn:
        delivery = (await conn.execute(
            select(deliveries).where(deliveries.c.delivery_id == delivery_id))).one()
        made = (await conn.execute(
            select(run_transitions, runs.c.repo_full_name, runs.c.number, runs.c.agent,
                   runs.c.trigger, runs.c.sender_login)
            .join(runs, runs.c.id == run_transitions.c.run_id)
            .where(run_transitions.c.at >= delivery.received_at)
            .order_by(run_transitions.c.id))).all()
    for row in made:
        lines.append(
            f"run #{row.run_id} {row.from_state or 'new'} -> {row.to_state}: "
            f"{row.repo_full_name}#{row.number}, agent {row.agent}, {row.reason}")
    if not made:
        lines.append("no run was queued or changed")
    if delivery.last_error:
        errors = json.loads(delivery.last_error)
        lines.extend(f"handler {name} failed: {error}" for name, error in errors.items())
    lines.append(f"delivery {delivery_id}: {delivery.status}")
    if recorder is None:
        return "\n".join(lines)
    queued = [row for row in made if row.to_state == RunState.QUEUED]
    lines.append("")
    lines.append("# GitHub requests (not sent)")
    lines.extend(r.render() for r in recorder.requests)
    if not recorder.requests:
        lines.append("none")
    for row in queued:
        run = await get_run(bot.engine, row.run_id)
        if run is None:  # made by this delivery a moment ago; nothing deletes runs
            continue
        owner, _, name = run.repo_full_name.partition("/")
        if run.base_sha is None:
            lines.append(f"GET /repos/{owner}/{name}/branches/{run.base_ref} (at launch)")
        body = json.dumps({"repositories": [name], "permissions": READ_PERMISSIONS},
                          sort_keys=True)
        lines.append(f"POST /app/installations/{run.installation_id}/access_tokens {body}"
                     " (by the gateway, at the sandbox's first fetch)")
    if not queued:
        return "\n".join(lines)
    # The objects the launcher would create, exactly as sent (secret values redacted), so
    # the text after this heading can go to `kubectl apply --dry-run=server -f -`.
    lines.append("")
    lines.append("# Kubernetes objects (not created)")
    documents = []
    for row in queued:
        run = await get_run(bot.engine, row.run_id)
        if run is None:
            continue
        spec = launch.run_spec(run, bot.settings, run.base_sha or f"<head of {run.base_ref}>")
        secrets = SandboxSecrets(REDACTED, REDACTED)
        documents.append(render_dry_run(spec, secrets, bot.settings).rstrip())
    lines.append("---\n" + "\n---\n".join(documents))
    return "\n".join(lines)
