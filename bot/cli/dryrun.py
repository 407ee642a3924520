"""A GitHub client that records what it would send and answers like GitHub would."""

from __future__ import annotations

import http
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import gidgethub
import uritemplate


@dataclass(frozen=True)
class Recorded:
    method: str
    url: str
    data: Any = None

    def render(self) -> str:
        body = "" if self.data is None else " " + json.dumps(self.data, sort_keys=True)
        return f"{self.method} {self.url}{body}"


@dataclass
class RecordingGitHub:
    """Stands in for the App's clients in `receive --dry-run`: no request leaves."""

    payload: dict[str, Any]
    requests: list[Recorded] = field(default_factory=list)
    app_login: str | None = None
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def installation(self, installation_id: int, cache: Any = None) -> RecordingClient:
        return RecordingClient(self)


@dataclass
class RecordingClient:
    parent: RecordingGitHub

    def _record(self, method: str, url: str, url_vars: dict[str, Any] | None,
                data: Any = None) -> str:
        expanded = uritemplate.expand(url, url_vars or {})
        self.parent.requests.append(Recorded(method, expanded, data))
        return expanded

    async def getitem(self, url: str, url_vars: dict[str, Any] | None = None, **_: Any) -> Any:
        expanded = self._record("GET", url, url_vars)
        repo = self.parent.payload.get("repository") or {}
        if expanded.endswith("/permission"):
            # Dry runs assume the sender may trigger.
            return {"permission": "admin", "role_name": "admin"}
        if "/contents/" in expanded:
            # A dry run reads no repository: it assumes there is no .github/agentbot.yml.
            raise gidgethub.BadRequest(http.HTTPStatus.NOT_FOUND, "Not Found")
        if "/pulls/" in expanded:
            number = int(expanded.rsplit("/", 1)[-1])
            return {"number": number,
                    "head": {"ref": f"<head branch of PR #{number}>", "sha": "0" * 40,
                             "repo": repo},
                    "base": {"ref": repo.get("default_branch", "main"), "repo": repo}}
        return {}

    async def getiter(self, url: str, url_vars: dict[str, Any] | None = None,
                      **_: Any) -> AsyncIterator[Any]:
        self._record("GET", url, url_vars)
        empty: tuple[Any, ...] = ()
        for item in empty:  # nothing is listed in a dry run
            yield item

    async def _write(self, method: str, url: str, url_vars: dict[str, Any] | None,
                     data: Any) -> dict[str, Any]:
        expanded = self._record(method, url, url_vars, data)
        new_id = next(self.parent._ids)
        return {"id": new_id, "html_url": f"https://github.invalid{expanded}/{new_id}"}

    async def post(self, url: str, url_vars: dict[str, Any] | None = None, *,
                   data: Any = None, **_: Any) -> Any:
        return await self._write("POST", url, url_vars, data)

    async def patch(self, url: str, url_vars: dict[str, Any] | None = None, *,
                    data: Any = None, **_: Any) -> Any:
        return await self._write("PATCH", url, url_vars, data)

    async def put(self, url: str, url_vars: dict[str, Any] | None = None, *,
                  data: Any = None, **_: Any) -> Any:
        return await self._write("PUT", url, url_vars, data)

    async def delete(self, url: str, url_vars: dict[str, Any] | None = None, *,
                     data: Any = None, **_: Any) -> None:
        self._record("DELETE", url, url_vars, data)
