"""The fake GitHub's own checks: the REST description, credentials, limits, git objects, faults."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.github_http import HANDLERS, Reply
from tests.fakes.openapi_check import RestDescription

pytest_plugins = ("pytester",)

INSTALLATION = 51234567
REPO = "octo-org/hello-world"
LENIENT = pytest.mark.parametrize("fake_github", [{"strict": False}], indirect=True)


@pytest.fixture
def world(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_installation(INSTALLATION, "octo-org")
    fake_github.add_repo("octo-org", "hello-world",
                         files={"README.md": b"# hello\n", "src/app.py": b"print('hi')\n"})
    fake_github.add_issue(REPO, 1)
    fake_github.add_collaborator(REPO, "alice", "maintain")
    return fake_github


def app_jwt(fake: FakeGitHub, *, iat: float | None = None, exp: float | None = None,
            iss: Any = None, key: str | None = None) -> str:
    now = int(time.time())
    claims = {"iat": int(iat if iat is not None else now - 60),
              "exp": int(exp if exp is not None else now + 540),
              "iss": str(fake.app_id) if iss is None else iss}
    return jwt.encode(claims, key or fake.private_key_pem, algorithm="RS256")


class Api:
    """A bare HTTP client: sends exactly what a test says, right or wrong."""

    def __init__(self, fake: FakeGitHub, session: aiohttp.ClientSession) -> None:
        self.fake, self.session, self.token = fake, session, ""

    async def call(self, method: str, path: str, body: Any = None, *, auth: str | None = None,
                   raw: bytes | None = None, headers: dict[str, str] | None = None
                   ) -> tuple[int, Any, Any]:
        sent = {"Authorization": auth if auth is not None else f"token {self.token}",
                **(headers or {})}
        if raw is not None:
            data = raw
        elif body is not None:
            data, sent["Content-Type"] = json.dumps(body).encode(), "application/json"
        else:
            data = None
        async with self.session.request(method, self.fake.url + path, data=data,
                                        headers=sent) as response:
            text = await response.read()
            parsed = json.loads(text) if text and "json" in response.content_type else text
            return response.status, parsed, response.headers


async def git(*args: str) -> str:
    """Run real git; its output, or the test fails with git's complaint."""
    process = await asyncio.create_subprocess_exec(
        "git", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


@pytest.fixture
async def api(world: FakeGitHub) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        client = Api(world, session)
        status, body, _ = await client.call(
            "POST", f"/app/installations/{INSTALLATION}/access_tokens",
            auth=f"Bearer {app_jwt(world)}")
        assert status == 201
        client.token = body["token"]
        yield client


def test_every_documented_operation_is_implemented() -> None:
    documented = {op.operation_id for op in RestDescription.load().operations}
    assert documented == set(HANDLERS)


@LENIENT
async def test_an_undocumented_path_is_refused_and_recorded(world: FakeGitHub, api: Api) -> None:
    status, body, _ = await api.call("GET", f"/repos/{REPO}/wiki/pages")
    assert status == 404 and body["message"] == "Not Found"
    status, _, _ = await api.call("DELETE", f"/repos/{REPO}")  # documented path, other method
    assert status == 404
    assert len(world.violations) == 2
    assert "GET /repos/octo-org/hello-world/wiki/pages: not an operation" in world.violations[0]


@LENIENT
async def test_an_invalid_body_is_refused_and_recorded(world: FakeGitHub, api: Api) -> None:
    path = f"/repos/{REPO}/issues/1/comments"
    status, body, _ = await api.call("POST", path, {"body": 42})
    assert status == 422 and "body/body: 42 is not of type 'string'" in body["message"]
    status, _, _ = await api.call("POST", path, {"bdy": "typo"})
    assert status == 422
    status, _, _ = await api.call("POST", path)  # required body missing
    assert status == 422
    status, _, _ = await api.call("POST", path, raw=b"{not json",
                                  headers={"Content-Type": "application/json"})
    assert status == 422
    assert world.comments(REPO, 1) == []
    assert len(world.violations) == 4
    assert "'body' is a required property" in world.violations[1]
    assert "property 'bdy' is not documented" in world.violations[1]
    assert "requires a JSON body" in world.violations[2]
    assert "not valid JSON" in world.violations[3]


@LENIENT
async def test_parameters_are_checked(world: FakeGitHub, api: Api) -> None:
    status, _, _ = await api.call("GET", f"/repos/{REPO}/issues/one")
    assert status == 422
    status, _, _ = await api.call("GET", f"/repos/{REPO}/pulls?head=octo-org:x&colour=red")
    assert status == 422
    status, _, _ = await api.call("GET", f"/repos/{REPO}/pulls?state=merged")
    assert status == 422
    assert ["path parameter 'issue_number'" in world.violations[0],
            "query parameter 'colour' is not documented" in world.violations[1],
            "query parameter 'state'" in world.violations[2]] == [True, True, True]


@LENIENT
@pytest.mark.parametrize(("path", "body", "needle"), [
    ("issues/1/comments", {"body": "x" * 65537}, "body has 65537 characters"),
    ("check-runs", {"name": "agentbot", "head_sha": "HEAD",
                    "output": {"title": "t", "summary": "s" * 65536}}, "is too long"),
    ("check-runs", {"name": "agentbot", "head_sha": "HEAD",
                    "actions": [{"label": "Cancel", "description": "d", "identifier": f"a{i}"}
                                for i in range(4)]}, "is too long"),
    ("check-runs", {"name": "agentbot", "head_sha": "HEAD",
                    "actions": [{"label": "L" * 21, "description": "d", "identifier": "i"}]},
     "is too long"),
    ("check-runs", {"name": "agentbot", "head_sha": "HEAD",
                    "actions": [{"label": "Retry", "description": "d" * 41, "identifier": "i"}]},
     "is too long"),
    ("check-runs", {"name": "agentbot", "head_sha": "HEAD",
                    "actions": [{"label": "Retry", "description": "d", "identifier": "i" * 21}]},
     "is too long"),
])
async def test_githubs_documented_limits(world: FakeGitHub, api: Api, path: str,
                                         body: dict[str, Any], needle: str) -> None:
    if body.get("head_sha") == "HEAD":
        body["head_sha"] = world.repo(REPO).git.refs["refs/heads/main"]
    status, _, _ = await api.call("POST", f"/repos/{REPO}/{path}", body)
    assert status == 422
    assert len(world.violations) == 1 and needle in world.violations[0]
    assert world.check_runs() == [] and world.comments(REPO, 1) == []


async def test_limits_are_inclusive(world: FakeGitHub, api: Api) -> None:
    status, _, _ = await api.call("POST", f"/repos/{REPO}/issues/1/comments",
                                  {"body": "x" * 65536})
    assert status == 201
    head = world.repo(REPO).git.refs["refs/heads/main"]
    actions = [{"label": "L" * 20, "description": "d" * 40, "identifier": f"{i}" * 20}
               for i in range(3)]
    status, run, _ = await api.call("POST", f"/repos/{REPO}/check-runs", {
        "name": "agentbot", "head_sha": head, "actions": actions,
        "output": {"title": "t", "summary": "s" * 65535, "text": "t" * 65535}})
    assert status == 201 and run["output"]["summary"] == "s" * 65535


async def test_a_fake_bug_in_a_response_is_a_violation(world: FakeGitHub, api: Api,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    world.allow_violations()
    monkeypatch.setitem(HANDLERS, "issues/get", lambda call: Reply(200, {"number": "1"}))
    status, _, _ = await api.call("GET", f"/repos/{REPO}/issues/1")
    assert status == 200
    assert "the fake's own answer breaks the schema" in world.violations[0]


async def test_a_crash_in_the_fake_is_a_violation(world: FakeGitHub, api: Api,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    world.allow_violations()

    def broken(call: Any) -> Reply:
        raise KeyError("oops")

    monkeypatch.setitem(HANDLERS, "repos/get", broken)
    status, _, _ = await api.call("GET", f"/repos/{REPO}")
    assert status == 500 and "the fake crashed" in world.violations[0]


# Times as offsets from the moment the test runs: the suite may reach it minutes after
# collecting it, and an `exp` 660 s ahead at collection is within GitHub's 600 s by then.
@pytest.mark.parametrize(("claims", "message"), [
    ({"exp": 660}, "too far in the future"),
    ({"exp": -1, "iat": -300}, "must be a numeric value"),
    ({"iat": 120}, "time in the past"),
    ({"iss": "999"}, "Issuer"),
])
async def test_jwt_rules(world: FakeGitHub, api: Api, claims: dict[str, Any],
                         message: str) -> None:
    now = time.time()
    claims = {key: now + value if key in ("exp", "iat") else value
              for key, value in claims.items()}
    status, body, _ = await api.call("GET", "/app", auth=f"Bearer {app_jwt(world, **claims)}")
    assert status == 401 and message in body["message"]


async def test_credentials_fit_the_operation(world: FakeGitHub, api: Api) -> None:
    assert (await api.call("GET", "/app", auth=f"token {api.token}"))[0] == 401
    assert (await api.call("GET", f"/repos/{REPO}", auth=f"Bearer {app_jwt(world)}"))[0] == 403
    assert (await api.call("GET", f"/repos/{REPO}", auth=""))[0] == 401
    assert (await api.call("GET", f"/repos/{REPO}", auth="token ghs_nonsense"))[0] == 401
    assert (await api.call("GET", f"/repos/{REPO}", auth=f"Bearer {api.token}"))[0] == 200
    assert (await api.call("GET", "/rate_limit"))[0] == 200
    assert (await api.call("GET", f"/repos/{REPO}/installation",
                           auth=f"Bearer {app_jwt(world)}"))[0] == 200


async def test_tokens_expire_after_an_hour(world: FakeGitHub, api: Api) -> None:
    issued = world.token_info(api.token)
    assert api.token.startswith("ghs_") and len(api.token) == 40 and api.token[4:].isalnum()
    assert issued.expires_at == pytest.approx(time.time() + 3600, abs=5)
    start = time.time()
    world.clock = lambda: start + 3601
    status, body, _ = await api.call("GET", f"/repos/{REPO}")
    assert status == 401 and body["message"] == "Bad credentials"


async def test_token_requests_beyond_the_installation_are_refused(world: FakeGitHub,
                                                                  api: Api) -> None:
    auth = f"Bearer {app_jwt(world)}"
    mint = f"/app/installations/{INSTALLATION}/access_tokens"
    status, _, _ = await api.call("POST", mint, {"repositories": ["elsewhere"]}, auth=auth)
    assert status == 422
    status, _, _ = await api.call("POST", mint, {"permissions": {"administration": "write"}},
                                  auth=auth)
    assert status == 422
    status, body, _ = await api.call("POST", mint, {"repositories": ["hello-world"],
                                                    "permissions": {"contents": "read"}},
                                     auth=auth)
    assert status == 201 and body["repository_selection"] == "selected"
    assert [r["full_name"] for r in body["repositories"]] == [REPO]
    status, _, _ = await api.call("POST", "/app/installations/1/access_tokens", auth=auth)
    assert status == 404


async def test_a_selected_installation_reaches_only_its_repositories(world: FakeGitHub,
                                                                     api: Api) -> None:
    world.add_repo("acme", "rocket")
    world.add_repo("acme", "secret")
    world.add_installation(77, "acme", repositories=["acme/rocket"])
    status, body, _ = await api.call("POST", "/app/installations/77/access_tokens",
                                     auth=f"Bearer {app_jwt(world)}")
    assert status == 201 and body["repository_selection"] == "selected"
    token = f"token {body['token']}"
    assert (await api.call("GET", "/repos/acme/rocket", auth=token))[0] == 200
    assert (await api.call("GET", "/repos/acme/secret", auth=token))[0] == 404
    assert (await api.call("GET", f"/repos/{REPO}", auth=token))[0] == 404
    _, listed, _ = await api.call("GET", "/installation/repositories", auth=token)
    assert [r["full_name"] for r in listed["repositories"]] == ["acme/rocket"]


async def test_git_data_round_trip_is_real_git(world: FakeGitHub, api: Api) -> None:
    repo = world.repo(REPO)
    base = repo.git.refs["refs/heads/main"]
    _, base_commit, _ = await api.call("GET", f"/repos/{REPO}/git/commits/{base}")
    _, blob, _ = await api.call("POST", f"/repos/{REPO}/git/blobs",
                                {"content": "AAEC/w==", "encoding": "base64"})
    _, tree, _ = await api.call("POST", f"/repos/{REPO}/git/trees", {
        "base_tree": base_commit["tree"]["sha"],
        "tree": [{"path": "bin/data", "mode": "100755", "type": "blob", "sha": blob["sha"]},
                 {"path": "docs/notes.md", "mode": "100644", "type": "blob", "content": "n\n"},
                 {"path": "src/app.py", "mode": "100644", "type": "blob", "sha": None}]})
    status, commit, _ = await api.call("POST", f"/repos/{REPO}/git/commits", {
        "message": "Add data", "tree": tree["sha"], "parents": [base]})
    assert status == 201
    status, _, _ = await api.call("POST", f"/repos/{REPO}/git/refs",
                                  {"ref": "refs/heads/agentbot/1-data", "sha": commit["sha"]})
    assert status == 201
    assert world.files(REPO, "agentbot/1-data") == {
        "README.md": ("100644", b"# hello\n"), "bin/data": ("100755", b"\x00\x01\x02\xff"),
        "docs/notes.md": ("100644", b"n\n")}
    # Real git agrees on every object id: the fake's repository is a bare repo on disk.
    at = ("--git-dir", str(repo.git.path))
    shown = await git(*at, "ls-tree", "-r", "agentbot/1-data")
    assert f"100755 blob {blob['sha']}\tbin/data" in shown
    await git(*at, "fsck", "--strict")
    log = (await git(*at, "log", "--format=%H %s", "agentbot/1-data")).split("\n")
    assert log[0] == f"{commit['sha']} Add data"


async def test_ref_updates_must_fast_forward(world: FakeGitHub, api: Api) -> None:
    repo = world.repo(REPO)
    base = repo.git.refs["refs/heads/main"]
    issue = world.add_pull(REPO, head_ref="feature", files={"f.txt": b"1\n"})
    pull = issue.pull
    assert pull is not None
    ahead = pull.head_sha
    status, _, _ = await api.call("PATCH", f"/repos/{REPO}/git/refs/heads/feature",
                                  {"sha": base})
    assert status == 422  # going back is not a fast-forward
    status, _, _ = await api.call("PATCH", f"/repos/{REPO}/git/refs/heads/feature",
                                  {"sha": base, "force": True})
    assert status == 200 and pull.head_sha == base  # the PR follows its branch
    status, _, _ = await api.call("PATCH", f"/repos/{REPO}/git/refs/heads/feature",
                                  {"sha": ahead})
    assert status == 200
    status, body, _ = await api.call("POST", f"/repos/{REPO}/git/refs",
                                     {"ref": "refs/heads/feature", "sha": ahead})
    assert status == 422 and body["errors"][0]["code"] == "already_exists"


async def test_clone_url_is_clonable(world: FakeGitHub, api: Api, tmp_path: Any) -> None:
    _, repo, _ = await api.call("GET", f"/repos/{REPO}")
    await git("clone", "-q", repo["clone_url"], str(tmp_path / "checkout"))
    assert (tmp_path / "checkout" / "src" / "app.py").read_bytes() == b"print('hi')\n"


async def test_fail_next_by_template_and_glob(world: FakeGitHub, api: Api) -> None:
    world.fail_next("GET", "/repos/{owner}/{repo}", 502, times=2)
    world.fail_next("*", "/repos/octo-org/*/issues/1", 429, headers={"Retry-After": "3"})
    assert (await api.call("GET", f"/repos/{REPO}"))[0] == 502
    assert (await api.call("GET", f"/repos/{REPO}"))[0] == 502
    assert (await api.call("GET", f"/repos/{REPO}"))[0] == 200
    status, body, headers = await api.call("GET", f"/repos/{REPO}/issues/1")
    assert (status, headers["retry-after"]) == (429, "3")
    assert "secondary rate limit" in body["message"]
    assert (await api.call("GET", f"/repos/{REPO}/issues/1"))[0] == 200


async def test_responses_carry_rate_limit_headers_and_etags(world: FakeGitHub, api: Api) -> None:
    _, _, first = await api.call("GET", f"/repos/{REPO}/issues/1")
    _, _, second = await api.call("GET", f"/repos/{REPO}/issues/1")
    assert int(second["x-ratelimit-remaining"]) == int(first["x-ratelimit-remaining"]) - 1
    assert first["x-ratelimit-limit"] == "5000" and first["x-ratelimit-resource"] == "core"
    status, _, third = await api.call("GET", f"/repos/{REPO}/issues/1",
                                      headers={"If-None-Match": first["etag"]})
    assert status == 304
    assert third["x-ratelimit-remaining"] == second["x-ratelimit-remaining"]


async def test_comments_paginate_with_link_headers(world: FakeGitHub, api: Api) -> None:
    for n in range(5):
        world.add_comment(REPO, 1, f"comment {n}")
    status, page, headers = await api.call("GET", f"/repos/{REPO}/issues/1/comments?per_page=2")
    assert status == 200 and [c["body"] for c in page] == ["comment 0", "comment 1"]
    assert 'page=2>; rel="next"' in headers["link"] and 'page=3>; rel="last"' in headers["link"]
    ids = [c["id"] for c in page]
    assert ids == sorted(ids) and len(set(ids)) == 2


async def test_reactions_and_permissions(world: FakeGitHub, api: Api) -> None:
    comment = world.add_comment(REPO, 1, "/agent go", user="alice")
    path = f"/repos/{REPO}/issues/comments/{comment.id}/reactions"
    assert (await api.call("POST", path, {"content": "eyes"}))[0] == 201
    assert (await api.call("POST", path, {"content": "eyes"}))[0] == 200  # already there
    assert world.reactions("comment", comment.id) == ["eyes"]
    _, maintainer, _ = await api.call("GET", f"/repos/{REPO}/collaborators/alice/permission")
    assert (maintainer["permission"], maintainer["role_name"]) == ("write", "maintain")
    _, stranger, _ = await api.call("GET", f"/repos/{REPO}/collaborators/eve/permission")
    assert stranger["permission"] == "read"  # a public repository: anyone reads


async def test_pull_requests(world: FakeGitHub, api: Api) -> None:
    repo = world.repo(REPO)
    head = repo.git.commit_files({"x.txt": b"x\n"}, repo.git.refs["refs/heads/main"], "x",
                                 world.state.person(world.bot_user))
    await api.call("POST", f"/repos/{REPO}/git/refs", {"ref": "refs/heads/agentbot/1-x",
                                                        "sha": head})
    create = {"title": "Fix", "head": "agentbot/1-x", "base": "main", "body": "Closes #1",
              "draft": True}
    status, pull, _ = await api.call("POST", f"/repos/{REPO}/pulls", create)
    assert status == 201 and pull["number"] == 2 and pull["draft"] is True
    assert pull["user"]["login"] == "agentbot[bot]" and pull["changed_files"] == 1
    assert (await api.call("POST", f"/repos/{REPO}/pulls", create))[0] == 422  # one per head
    _, found, _ = await api.call("GET", f"/repos/{REPO}/pulls?head=octo-org:agentbot/1-x")
    assert [p["number"] for p in found] == [2]
    reviewers = f"/repos/{REPO}/pulls/2/requested_reviewers"
    assert (await api.call("POST", reviewers, {"reviewers": ["mallory"]}))[0] == 422
    status, simple, _ = await api.call("POST", reviewers, {"reviewers": ["alice"]})
    assert status == 201 and [u["login"] for u in simple["requested_reviewers"]] == ["alice"]


async def test_check_runs(world: FakeGitHub, api: Api) -> None:
    head = world.repo(REPO).git.refs["refs/heads/main"]
    status, run, _ = await api.call("POST", f"/repos/{REPO}/check-runs", {
        "name": "agentbot", "head_sha": head, "status": "in_progress", "external_id": "run-1",
        "output": {"title": "Working", "summary": "step 1"}})
    assert status == 201 and run["status"] == "in_progress"
    status, done, _ = await api.call("PATCH", f"/repos/{REPO}/check-runs/{run['id']}",
                                     {"conclusion": "success"})
    assert (done["status"], done["conclusion"]) == ("completed", "success")
    assert done["completed_at"] is not None
    _, listed, _ = await api.call("GET", f"/repos/{REPO}/commits/main/check-runs"
                                         "?check_name=agentbot")
    assert listed["total_count"] == 1 and listed["check_runs"][0]["id"] == run["id"]


@LENIENT
async def test_completing_without_a_conclusion_breaks_the_schema(world: FakeGitHub,
                                                                 api: Api) -> None:
    head = world.repo(REPO).git.refs["refs/heads/main"]
    _, run, _ = await api.call("POST", f"/repos/{REPO}/check-runs",
                               {"name": "agentbot", "head_sha": head})
    status, _, _ = await api.call("PATCH", f"/repos/{REPO}/check-runs/{run['id']}",
                                  {"status": "completed"})
    assert status == 422 and len(world.violations) == 1


async def test_hook_deliveries_and_redelivery(world: FakeGitHub, api: Api) -> None:
    auth = f"Bearer {app_jwt(world)}"
    made = [world.add_hook_delivery("issues", "labeled", status_code=code)
            for code in (202, 500, 202)]
    _, page, headers = await api.call("GET", "/app/hook/deliveries?per_page=2", auth=auth)
    assert [d["id"] for d in page] == [made[2].id, made[1].id]
    assert "cursor=" in headers["link"]
    _, failed, _ = await api.call("GET", "/app/hook/deliveries?status=failure", auth=auth)
    assert [d["guid"] for d in failed] == [made[1].guid]
    status, _, _ = await api.call("POST", f"/app/hook/deliveries/{made[1].id}/attempts",
                                  auth=auth)
    assert status == 202 and world.state.redelivered == [made[1].id]


async def test_manifest_codes_convert_once(world: FakeGitHub, api: Api) -> None:
    world.add_manifest_code("abc123")
    status, app, _ = await api.call("POST", "/app-manifests/abc123/conversions", auth="")
    assert status == 201 and app["id"] == world.app_id and "PRIVATE KEY" in app["pem"]
    assert (await api.call("POST", "/app-manifests/abc123/conversions", auth=""))[0] == 404


async def test_requests_are_recorded_without_credentials(world: FakeGitHub, api: Api) -> None:
    await api.call("POST", f"/repos/{REPO}/issues/1/comments", {"body": "hi"})
    recorded = world.calls("POST /repos/{owner}/{repo}/issues/{issue_number}/comments")
    assert recorded[0].json == {"body": "hi"} and recorded[0].status == 201
    assert all("authorization" not in r.headers for r in world.requests)
    assert all(api.token not in json.dumps(r.json) for r in world.requests if r.json)


_INNER = '''
import aiohttp, pytest

async def test_strict(fake_github):
    async with aiohttp.ClientSession() as session:
        async with session.get(fake_github.url + "/repos/o/r/wiki") as response:
            assert response.status == 404

@pytest.mark.parametrize("fake_github", [{"strict": False}], indirect=True)
async def test_lenient(fake_github):
    async with aiohttp.ClientSession() as session:
        async with session.get(fake_github.url + "/repos/o/r/wiki") as response:
            assert response.status == 404
'''


def test_teardown_fails_a_test_with_violations(pytester: pytest.Pytester,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    pytester.makeini("[pytest]\nasyncio_mode = auto\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest('pytest_plugins = ["tests.fakes.github"]\n')
    pytester.makepyfile(test_inner=_INNER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*the fake GitHub refused requests GitHub would refuse*",
                                 "*GET /repos/o/r/wiki: not an operation*"])
