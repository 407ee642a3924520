"""`agentbot receive`: one payload through the same pipeline as a webhook, then a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from bot import launch
from bot.app import Bot, start_bot, stop_bot
from bot.dryrun import RecordingGitHub
from bot.executors.base import SandboxSecrets
from bot.intake import DeliveryRow
from bot.manifests import render_dry_run
from bot.runs import get_run
from bot.settings import Settings
from bot.store import RunState, deliveries, run_transitions, runs

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
    recorder = None
    if dry_run:
        # Nothing touches the real database or GitHub: a private in-memory ledger.
        settings = settings.model_copy(update={"database_url": "sqlite+aiosqlite://"})
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
        return await _report(bot, delivery_id, recorder)
    finally:
        await stop_bot(bot)


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
        body = json.dumps({"repositories": [name], "permissions": launch.SANDBOX_PERMISSIONS},
                          sort_keys=True)
        lines.append(f"POST /app/installations/{run.installation_id}/access_tokens {body}"
                     " (at launch)")
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
