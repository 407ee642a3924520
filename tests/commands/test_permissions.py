"""Who may trigger: roles from the collaborator permission API, cached at most 5 minutes."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest
from gidgethub import BadRequest

from bot.commands.permissions import CACHE_SECONDS, Permissions


class Answers:
    """The one gidgethub call Permissions makes, answering from a table and counting."""

    def __init__(self, roles: dict[str, dict[str, str] | None]) -> None:
        self.roles = roles
        self.asked: list[str] = []

    async def getitem(self, url: str, url_vars: dict[str, str]) -> dict[str, str]:
        assert url == "/repos/{owner}/{repo}/collaborators/{username}/permission"
        self.asked.append(url_vars["username"])
        answer = self.roles[url_vars["username"].lower()]
        if answer is None:
            raise BadRequest(HTTPStatus.NOT_FOUND, "Not Found")
        return answer


@pytest.mark.parametrize("answer, allowed", [
    ({"permission": "admin", "role_name": "admin"}, True),
    ({"permission": "write", "role_name": "maintain"}, True),
    ({"permission": "write", "role_name": "write"}, True),
    ({"permission": "write", "role_name": "release-managers"}, True),  # custom role on write
    ({"permission": "read", "role_name": "triage"}, False),
    ({"permission": "read", "role_name": "read"}, False),
    ({"permission": "none", "role_name": "none"}, False),
    (None, False),  # 404: not a collaborator
])
async def test_roles(answer: dict[str, str] | None, allowed: bool) -> None:
    gh = Answers({"someone": answer})
    assert await Permissions().may_trigger(gh, "o/r", "someone") is allowed


async def test_answers_are_cached_for_at_most_five_minutes() -> None:
    now = [0.0]
    gh = Answers({"octocat": {"permission": "write", "role_name": "write"}})
    permissions = Permissions(timer=lambda: now[0])
    assert await permissions.may_trigger(gh, "O/R", "OctoCat")
    now[0] = CACHE_SECONDS - 1
    assert await permissions.may_trigger(gh, "o/r", "octocat")  # same key, any case
    assert gh.asked == ["OctoCat"]
    gh.roles["octocat"] = {"permission": "read", "role_name": "read"}  # revoked
    now[0] = CACHE_SECONDS + 1
    assert not await permissions.may_trigger(gh, "o/r", "octocat")
    assert len(gh.asked) == 2


async def test_other_errors_are_not_taken_as_a_no() -> None:
    class Broken(Answers):
        async def getitem(self, url: str, url_vars: dict[str, str]) -> Any:
            raise BadRequest(HTTPStatus.FORBIDDEN, "Resource not accessible by integration")

    permissions = Permissions()
    with pytest.raises(BadRequest):
        await permissions.may_trigger(Broken({}), "o/r", "x")
