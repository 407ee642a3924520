"""Git's smart HTTP protocol over the fake GitHub's repositories, for sandboxes to clone from.

Runs `git http-backend` (git's own CGI program) per request, the way GitHub's git front end
serves clones, and admits only a live installation token the fake minted for that repository
with `contents` access, sent the way GitHub expects it (Basic, user `x-access-token`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.github import FakeGitHub
from tests.fakes.github_state import IssuedToken

_SERVICES = {"git-upload-pack"}  # fetch and clone only: a sandbox never pushes
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="GitHub"'}


@dataclass
class GitServer:
    """An aiohttp application serving `/{owner}/{repo}.git/...` from the fake's git root."""

    fake: FakeGitHub
    used_tokens: list[IssuedToken] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{owner}/{repo}.git/{tail:.*}", self._handle)
        return app

    def _token(self, request: web.Request) -> IssuedToken | None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, token = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        issued = self.fake.state.tokens.get(token)
        if user != "x-access-token" or issued is None or issued.revoked:
            return None
        return issued if issued.expires_at > self.fake.state.now() else None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        owner, name = request.match_info["owner"], request.match_info["repo"]
        repo = self.fake.state.repos.get(f"{owner}/{name}")
        if repo is None or repo.git.path is None:
            raise web.HTTPNotFound()
        service = request.query.get("service") or request.match_info["tail"].rpartition("/")[2]
        if service.startswith("git-") and service not in _SERVICES:
            raise web.HTTPForbidden(text="this server only serves fetches\n")
        issued = self._token(request)
        installation = self.fake.state.installation_for(repo)
        if (issued is None or installation is None
                or issued.installation_id != installation.id
                or (issued.repository_ids is not None and repo.id not in issued.repository_ids)
                or issued.permissions.get("contents") not in {"read", "write"}):
            # GitHub answers a private repository's unauthorised clone the same way.
            raise web.HTTPUnauthorized(headers=_CHALLENGE)
        self.used_tokens.append(issued)
        return await self._cgi(request, f"/{owner}/{name}.git/{request.match_info['tail']}")

    async def _cgi(self, request: web.Request, path_info: str) -> web.StreamResponse:
        assert self.fake.git_root is not None
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "GIT_PROJECT_ROOT": str(self.fake.git_root.resolve()),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path_info,
            "QUERY_STRING": request.query_string,
            "REQUEST_METHOD": request.method,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": request.remote or "",
        }
        body = await request.read()
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        if proc.returncode and status == 200:
            return web.Response(status=500, text=err.decode(errors="replace")[-2000:])
        return web.Response(status=status, headers=headers, body=payload)
