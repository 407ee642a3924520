"""Composes the feature routers: the one place to see every event agentbot handles."""

from __future__ import annotations

from gidgethub import routing

from bot.commands import approvals, buttons, triggers

router = routing.Router(triggers.router, buttons.router, approvals.router)


def handled_events() -> set[str]:
    """Event names with at least one handler; the App manifest subscribes to exactly these."""
    return set(router._shallow_routes) | set(router._deep_routes)
