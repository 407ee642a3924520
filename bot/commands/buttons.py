"""Check-run buttons and re-runs: `approve` and `deny` while a run waits for approval,
`cancel` while it runs, `retry` after a failure."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.commands import approvals, verbs
from bot.commands.context import Context
from bot.commands.sources import Source, authorised, ignored_sender
from bot.runs import ledger
from bot.store.tables import FINAL_STATES, RunState

log = logging.getLogger(__name__)

router = routing.Router()

CANCEL = "cancel"
RETRY = "retry"
APPROVE = "approve"
DENY = "deny"


async def _authorised_run(event: sansio.Event, ctx: Context
                          ) -> tuple[Any, Source, Any] | None:
    """Our run behind the check run, its Source and a client, if the sender may act."""
    data = event.data
    check_run = data["check_run"]
    if ignored_sender(ctx, data["sender"]):
        return None
    external_id = check_run.get("external_id") or ""
    if not (external_id.isascii() and external_id.isdigit()):
        return None  # not one of ours
    run = await ledger.get_run(ctx.db, int(external_id))
    if run is None or run.repo_id != data["repository"]["id"]:
        log.warning("check run names an unknown run", extra={"external_id": external_id})
        return None
    source = Source(
        event=event, installation_id=data["installation"]["id"], repo=data["repository"],
        number=run.number, is_pull_request=run.is_pull_request, sender=data["sender"],
    )
    gh = ctx.github.installation(source.installation_id)
    if not await authorised(ctx, gh, source):
        return None
    return run, source, gh


@router.register("check_run", action="requested_action")
async def on_requested_action(event: sansio.Event, ctx: Context) -> None:
    """The Approve, Deny, Cancel and Retry buttons of a run's check run."""
    found = await _authorised_run(event, ctx)
    if found is None:
        return
    run, source, gh = found
    identifier = (event.data.get("requested_action") or {}).get("identifier")
    waiting = run.state == RunState.AWAITING_APPROVAL.value
    if identifier == APPROVE and waiting:
        await approvals.approve(ctx, gh, source, run)
    elif identifier == DENY and waiting:
        await approvals.deny(ctx, source, run)
    elif identifier == CANCEL:
        if await ledger.request_cancel(ctx.db, run.id, by=source.login) is not None:
            ctx.on_run_change()
    elif identifier == RETRY and RunState(run.state) in FINAL_STATES:
        await verbs.retry(ctx, gh, source, trigger="retry", run=run)
    else:
        log.info("ignoring check run action %r in state %s", identifier, run.state,
                 extra={"run_id": run.id})


@router.register("check_run", action="rerequested")
async def on_rerequested(event: sansio.Event, ctx: Context) -> None:
    """"Re-run" on a finished check run is a retry."""
    found = await _authorised_run(event, ctx)
    if found is None:
        return
    run, source, gh = found
    if RunState(run.state) in FINAL_STATES:
        await verbs.retry(ctx, gh, source, trigger="retry", run=run)
