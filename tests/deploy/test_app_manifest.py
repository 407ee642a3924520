"""app-manifest.yml: GitHub's manifest format, the router's events, and the least permissions."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from bot.intake.router import handled_events
from tests.fakes.github_auth import needs
from tests.fakes.github_state import DEFAULT_PERMISSIONS

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "app-manifest.yml"
REST_SCHEMAS = ROOT / "tests" / "fakes" / "schemas" / "rest.json"
WEBHOOK_SCHEMAS = ROOT / "tests" / "fakes" / "schemas" / "webhooks.json"

# The parameters GitHub's manifest flow accepts ("Registering a GitHub App from a manifest").
MANIFEST_KEYS = {
    "name", "url", "description", "hook_attributes", "redirect_url", "callback_urls",
    "setup_url", "public", "default_events", "default_permissions",
    "request_oauth_on_install", "setup_on_update",
}
LEVELS = {"read": 1, "write": 2}

APP_JWT = "app"  # authenticated as the App itself (a JWT): no installation permission involved
NO_AUTH = "none"  # no credential, or the token being revoked


class Need(NamedTuple):
    """The installation permission a REST operation needs, per GitHub's permission tables."""

    permission: str
    level: str


# Every REST operation agentbot may call (method + path template), and what it needs. The fake
# GitHub serves exactly these, so a call missing here cannot pass the suite either.
GITHUB_OPERATIONS: dict[str, Need | str] = {
    # App-level calls, made with the App's JWT or with no credential.
    "GET /app": APP_JWT,
    "GET /app/installations/{installation_id}": APP_JWT,
    "POST /app/installations/{installation_id}/access_tokens": APP_JWT,
    "GET /repos/{owner}/{repo}/installation": APP_JWT,
    "GET /app/hook/deliveries": APP_JWT,
    "POST /app/hook/deliveries/{delivery_id}/attempts": APP_JWT,
    "POST /app-manifests/{code}/conversions": NO_AUTH,
    "DELETE /installation/token": NO_AUTH,
    "GET /rate_limit": NO_AUTH,
    # The run pages, with a signed-in person's own token: who they are needs no permission of
    # the App's (GET /repos/{owner}/{repo} with it is the metadata read below).
    "GET /user": NO_AUTH,
    # Metadata: granted to every App.
    "GET /installation/repositories": Need("metadata", "read"),
    "GET /repos/{owner}/{repo}": Need("metadata", "read"),
    "GET /repos/{owner}/{repo}/collaborators/{username}/permission": Need("metadata", "read"),
    # Contents: the per-repo config, and the Git Data API the publisher commits with.
    "GET /repos/{owner}/{repo}/contents/{path}": Need("contents", "read"),
    "GET /repos/{owner}/{repo}/branches/{branch}": Need("contents", "read"),
    "GET /repos/{owner}/{repo}/git/blobs/{file_sha}": Need("contents", "read"),
    "GET /repos/{owner}/{repo}/git/commits/{commit_sha}": Need("contents", "read"),
    "GET /repos/{owner}/{repo}/git/ref/{ref}": Need("contents", "read"),
    "GET /repos/{owner}/{repo}/git/trees/{tree_sha}": Need("contents", "read"),
    "POST /repos/{owner}/{repo}/git/blobs": Need("contents", "write"),
    "POST /repos/{owner}/{repo}/git/trees": Need("contents", "write"),
    "POST /repos/{owner}/{repo}/git/commits": Need("contents", "write"),
    "POST /repos/{owner}/{repo}/git/refs": Need("contents", "write"),
    "PATCH /repos/{owner}/{repo}/git/refs/{ref}": Need("contents", "write"),
    "DELETE /repos/{owner}/{repo}/git/refs/{ref}": Need("contents", "write"),
    # Issues: comments, replies and reactions (GitHub also accepts pull_requests for PRs).
    "GET /repos/{owner}/{repo}/issues/{issue_number}": Need("issues", "read"),
    "GET /repos/{owner}/{repo}/issues/{issue_number}/comments": Need("issues", "read"),
    "GET /repos/{owner}/{repo}/issues/comments/{comment_id}": Need("issues", "read"),
    "POST /repos/{owner}/{repo}/issues/{issue_number}/comments": Need("issues", "write"),
    "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}": Need("issues", "write"),
    "POST /repos/{owner}/{repo}/issues/{issue_number}/reactions": Need("issues", "write"),
    "POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions": Need("issues", "write"),
    # Pull requests: the draft PR, its reviewers, review comments and their reactions.
    "GET /repos/{owner}/{repo}/pulls": Need("pull_requests", "read"),
    "GET /repos/{owner}/{repo}/pulls/{pull_number}": Need("pull_requests", "read"),
    "GET /repos/{owner}/{repo}/pulls/comments/{comment_id}": Need("pull_requests", "read"),
    "POST /repos/{owner}/{repo}/pulls": Need("pull_requests", "write"),
    "PATCH /repos/{owner}/{repo}/pulls/{pull_number}": Need("pull_requests", "write"),
    "POST /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers":
        Need("pull_requests", "write"),
    "POST /repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies":
        Need("pull_requests", "write"),
    "POST /repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions":
        Need("pull_requests", "write"),
    # Checks: the run's check run and its buttons.
    "GET /repos/{owner}/{repo}/check-runs/{check_run_id}": Need("checks", "read"),
    "GET /repos/{owner}/{repo}/commits/{ref}/check-runs": Need("checks", "read"),
    "POST /repos/{owner}/{repo}/check-runs": Need("checks", "write"),
    "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}": Need("checks", "write"),
}

# What a webhook event needs the App to hold before GitHub delivers it.
EVENT_PERMISSIONS = {"issues": "issues", "issue_comment": "issues",
                     "pull_request_review_comment": "pull_requests", "check_run": "checks"}

# The token a sandbox gets: one repository, read-only contents (SPEC "Security model").
SANDBOX_TOKEN_PERMISSIONS = {"contents": "read"}

# String literals in bot/ that look like a GitHub REST path.
REST_PATH = re.compile(r"^/(repos/|app(/|$)|app-manifests/|installation(/|$)|rate_limit$|orgs/"
                       r"|users/|user(/|$)|search/|graphql$|meta$|marketplace_listing/)")
GIDGETHUB_METHODS = {"getitem": "GET", "getiter": "GET", "getstatus": "GET", "post": "POST",
                     "patch": "PATCH", "put": "PUT", "delete": "DELETE"}


def manifest() -> dict[str, object]:
    loaded = yaml.safe_load(MANIFEST.read_text())
    assert isinstance(loaded, dict)
    return loaded


def granted() -> dict[str, str]:
    permissions = manifest()["default_permissions"]
    assert isinstance(permissions, dict)
    return permissions


def allows(permissions: dict[str, str], need: Need) -> bool:
    held = permissions.get(need.permission)
    return held is not None and LEVELS[held] >= LEVELS[need.level]


def normalise(path: str) -> str:
    """A path template with every variable written `{}` and any query template dropped."""
    path = re.sub(r"\{[?&][^}]*\}", "", path).split("?", 1)[0]
    return re.sub(r"\{[^}]*\}", "{}", path)


class Literal(NamedTuple):
    where: str
    method: str | None  # known when the literal is the URL argument of a gidgethub call
    path: str


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # f"/repos/{name}/..." -> "/repos/{}/..."
        return "".join(
            part.value if isinstance(part, ast.Constant) else "{}" for part in node.values
        )
    return None


def github_paths(source: Path) -> Iterator[Literal]:
    """Every REST path literal in the package under `source`, with its method when known."""
    for file in sorted(source.rglob("*.py")):
        tree = ast.parse(file.read_text(), filename=str(file))
        methods: dict[int, str] = {}
        inside_fstrings: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                inside_fstrings.update(id(part) for part in node.values)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in GIDGETHUB_METHODS and node.args):
                methods[id(node.args[0])] = GIDGETHUB_METHODS[node.func.attr]
        for node in ast.walk(tree):
            text = None if id(node) in inside_fstrings else _text(node)
            if text is not None and REST_PATH.match(text):
                where = f"{file.relative_to(source.parent)}:{getattr(node, 'lineno', 0)}"
                yield Literal(where, methods.get(id(node)), text)


# --- The manifest's format ------------------------------------------------------------------


def test_manifest_uses_only_githubs_parameters() -> None:
    data = manifest()
    assert set(data) <= MANIFEST_KEYS
    assert isinstance(data["name"], str) and 0 < len(data["name"]) <= 34
    assert urlsplit(str(data["url"])).scheme == "https"
    assert data["public"] is False
    hook = data["hook_attributes"]
    assert isinstance(hook, dict) and set(hook) <= {"url", "active"} and hook["active"] is True


def test_placeholder_urls_cannot_deliver_anywhere() -> None:
    data = manifest()
    hook = data["hook_attributes"]
    assert isinstance(hook, dict)
    for url in (hook["url"], data["redirect_url"]):
        parts = urlsplit(str(url))
        assert parts.scheme == "https"
        # RFC 2606: .invalid never resolves, so a manifest the setup flow did not fill in fails
        # closed instead of sending deliveries to a stranger's host.
        assert parts.hostname is not None and parts.hostname.endswith(".invalid")
    assert urlsplit(str(hook["url"])).path == "/webhook"


def test_permissions_are_valid_app_permissions() -> None:
    schema = json.loads(REST_SCHEMAS.read_text())["components"]["schemas"]["app-permissions"]
    strict = {**schema, "additionalProperties": False}
    jsonschema.validate(granted(), strict)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**granted(), "pull_request": "write"}, strict)


# --- Events ---------------------------------------------------------------------------------


def test_events_equal_those_the_router_handles() -> None:
    assert set(manifest()["default_events"]) == handled_events()  # type: ignore[arg-type]


def test_events_are_deliverable_with_the_permissions() -> None:
    known = {name.split(".")[0] for name in json.loads(WEBHOOK_SCHEMAS.read_text())["webhooks"]}
    for event in manifest()["default_events"]:  # type: ignore[union-attr]
        assert event in known, f"{event} is not a webhook event GitHub documents"
        assert EVENT_PERMISSIONS[event] in granted()


# --- Permissions: every call allowed, nothing more granted ----------------------------------


def test_table_covers_every_operation_the_fake_github_serves() -> None:
    served = set(json.loads(REST_SCHEMAS.read_text())["operations"])
    assert served - set(GITHUB_OPERATIONS) == set(), "map these operations to a permission"


@pytest.mark.parametrize("operation", sorted(GITHUB_OPERATIONS))
def test_every_operation_is_allowed(operation: str) -> None:
    need = GITHUB_OPERATIONS[operation]
    assert need in (APP_JWT, NO_AUTH) or (isinstance(need, Need) and allows(granted(), need))


def test_no_permission_beyond_what_the_calls_need() -> None:
    needed: dict[str, str] = {}
    for need in GITHUB_OPERATIONS.values():
        if isinstance(need, Need) and LEVELS[need.level] > LEVELS.get(
                needed.get(need.permission, ""), 0):
            needed[need.permission] = need.level
    needed.update({p: lvl for p, lvl in SANDBOX_TOKEN_PERMISSIONS.items() if p not in needed})
    assert granted() == needed


def test_sandbox_token_is_a_subset_of_the_apps_permissions() -> None:
    for permission, level in SANDBOX_TOKEN_PERMISSIONS.items():
        assert allows(granted(), Need(permission, level))


def test_every_rest_path_in_the_code_is_in_the_table() -> None:
    by_path: dict[str, set[str]] = {}
    for operation in GITHUB_OPERATIONS:
        method, path = operation.split(" ", 1)
        by_path.setdefault(normalise(path), set()).add(method)
    found = list(github_paths(ROOT / "bot"))
    assert found, "the scanner found no GitHub call at all"
    unknown = [
        f"{lit.where} {lit.method or '?'} {lit.path}" for lit in found
        if normalise(lit.path) not in by_path
        or (lit.method is not None and lit.method not in by_path[normalise(lit.path)])
    ]
    assert unknown == [], "GitHub calls without a permission mapping"


def test_the_scanner_sees_literals_and_fstrings(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "calls.py").write_text(
        "async def f(gh, owner, n):\n"
        "    await gh.post('/repos/{owner}/{repo}/issues/{issue_number}/comments', data={})\n"
        "    await gh.delete(f'/repos/{owner}/x/hooks/{n}')\n"
        "    url = '/repos/{owner}/{repo}/pulls{?state}'\n"
        "    return '/webhook'\n"
    )
    found = {(lit.method, normalise(lit.path)) for lit in github_paths(package)}
    assert found == {
        ("POST", "/repos/{}/{}/issues/{}/comments"),
        ("DELETE", "/repos/{}/x/hooks/{}"),
        (None, "/repos/{}/{}/pulls"),
    }


# --- The fake GitHub the suite runs against -------------------------------------------------


def test_the_suites_fake_app_holds_exactly_the_manifests_permissions() -> None:
    # The fake answers 403 for a call its token's permissions do not cover, so the whole
    # suite exercises the code under the manifest's grants and no others.
    assert granted() == DEFAULT_PERMISSIONS


def test_the_fakes_own_permission_rules_allow_every_operation() -> None:
    operations = json.loads(REST_SCHEMAS.read_text())["operations"]
    refused = []
    for key, operation in operations.items():
        names = needs(operation["operationId"])
        level = "read" if key.startswith("GET ") else "write"
        if names and not any(allows(granted(), Need(name, level)) for name in names):
            refused.append(key)
    assert refused == []
