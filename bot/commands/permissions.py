"""Who may trigger: write, maintain or admin, from the collaborator permission API."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache
from gidgethub import BadRequest

log = logging.getLogger(__name__)

ALLOWED_ROLES = frozenset({"admin", "maintain", "write"})
CACHE_SECONDS = 300  # the spec's upper bound: a revoked permission counts within 5 minutes


class Permissions:
    """Caches each (repository, user) answer for at most five minutes."""

    def __init__(self, ttl: float = CACHE_SECONDS, maxsize: int = 10_000,
                 timer: Callable[[], float] = time.monotonic) -> None:
        self._cache: TTLCache[tuple[str, str], bool] = TTLCache(maxsize, ttl, timer=timer)

    async def may_trigger(self, gh: Any, repo_full_name: str, login: str) -> bool:
        """True when `login` has write, maintain or admin permission on the repository."""
        key = (repo_full_name.lower(), login.lower())
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        owner, _, repo = repo_full_name.partition("/")
        try:
            answer = await gh.getitem(
                "/repos/{owner}/{repo}/collaborators/{username}/permission",
                {"owner": owner, "repo": repo, "username": login},
            )
        except BadRequest as exc:
            # 404: not a collaborator (or the user does not exist): no permission.
            if exc.status_code.value != 404:
                raise
            allowed = False
        else:
            # `permission` folds maintain into write and triage into read; `role_name`
            # is the precise role where GitHub sends it (custom roles included).
            role = answer.get("role_name") or answer.get("permission") or "none"
            allowed = role in ALLOWED_ROLES or answer.get("permission") in ("admin", "write")
        self._cache[key] = allowed
        return allowed
