"""Webhook payloads for tests: the tests/payloads/ fixtures adjusted per test, and signing."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import zlib
from functools import cache
from pathlib import Path
from typing import Any

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads"

# Who and where the fixtures are about; the fake GitHub's default App id matches APP_ID.
OWNER, REPO, REPO_ID = "octo-org", "hello-world", 1296269
INSTALLATION_ID, APP_ID, APP_SLUG = 51234567, 424242, "agentbot"
ISSUE_NUMBER, PULL_NUMBER = 42, 43


@cache
def _text(name: str) -> str:
    return (PAYLOADS / f"{name}.json").read_text()


def fixture_names() -> list[str]:
    """Every fixture file's name without `.json` (`issue_comment.created.pull_request`, ...)."""
    return sorted(p.name.removesuffix(".json") for p in PAYLOADS.glob("*.json"))


def schema_key(name: str) -> str:
    """The webhook schema a fixture is checked against: `event.action` (or just `event`)."""
    return ".".join(name.split(".")[:2])


def payload(event: str, action: str | None = None, variant: str | None = None, *,
            owner: str = OWNER, repo: str = REPO, repo_id: int = REPO_ID,
            installation_id: int = INSTALLATION_ID, **overrides: Any) -> dict[str, Any]:
    """A fresh copy of a fixture, moved to `owner/repo`, with top-level keys deep-merged."""
    name = ".".join(p for p in (event, action, variant) if p)
    text = _text(name)
    if (owner, repo) != (OWNER, REPO):
        text = text.replace(f"{OWNER}/{REPO}", f"{owner}/{repo}")
    data = json.loads(text)
    if "repository" in data:
        data["repository"].update(id=repo_id, name=repo, full_name=f"{owner}/{repo}")
        if owner != OWNER:
            data["repository"]["owner"] = user(owner, "Organization")
    if "installation" in data:
        data["installation"]["id"] = installation_id
    _merge(data, overrides)
    return data


def _merge(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def user(login: str, kind: str = "User") -> dict[str, Any]:
    """A webhook `user` object for any login (ids are stable per login)."""
    base = json.loads(_text("issues.opened"))["sender"]
    text = json.dumps(base).replace('"octocat"', json.dumps(login)).replace("/octocat", f"/{login}")
    out = json.loads(text)
    number = 10_000_000 + zlib.crc32(login.encode()) % 90_000_000
    out.update(id=number, type=kind, node_id=f"U_kgDO{number}")
    if kind == "Bot":
        out["html_url"] = f"https://github.com/apps/{login.removesuffix('[bot]')}"
    return out


def _people(data: dict[str, Any], login: str, sender_type: str, *places: str) -> None:
    who = user(login, sender_type)
    data["sender"] = who
    for place in places:
        data[place]["user"] = copy.deepcopy(who)


def issue_comment(body: str = "/agent please add the flag and a test for it", *,
                  action: str = "created", login: str = "octocat", sender_type: str = "User",
                  on_pull_request: bool = False, number: int | None = None,
                  comment_id: int | None = None, **where: Any) -> dict[str, Any]:
    """An `issue_comment` delivery on an issue (or, with `on_pull_request`, on a PR)."""
    data = payload("issue_comment", action, "pull_request" if on_pull_request else None, **where)
    _people(data, login, sender_type, "comment")
    data["comment"]["body"] = body
    if sender_type == "Bot" and login == f"{APP_SLUG}[bot]":
        data["comment"]["performed_via_github_app"] = _app()
    comment = data["comment"]
    if number is not None:
        _renumber(data["issue"], number)
    if comment_id is not None:
        comment["id"] = comment_id
        comment["url"] = comment["url"].rsplit("/", 1)[0] + f"/{comment_id}"
        comment["reactions"]["url"] = comment["url"] + "/reactions"
    comment["issue_url"] = data["issue"]["url"]
    comment["html_url"] = f"{data['issue']['html_url']}#issuecomment-{comment['id']}"
    return data


def _renumber(issue: dict[str, Any], number: int) -> None:
    text = json.dumps(issue)
    for kind in ("issues", "pull", "pulls"):
        text = text.replace(f"/{kind}/{issue['number']}", f"/{kind}/{number}")
    issue.clear()
    issue.update(json.loads(text), number=number)


def _app() -> dict[str, Any]:
    return copy.deepcopy(json.loads(_text("check_run.rerequested"))["check_run"]["app"])


def issues_labeled(label: str = "agent", *, login: str = "octocat", sender_type: str = "User",
                   number: int | None = None, title: str | None = None,
                   body: str | None = None, **where: Any) -> dict[str, Any]:
    """An `issues.labeled` delivery adding `label` to the issue."""
    data = payload("issues", "labeled", **where)
    data["sender"] = user(login, sender_type)
    data["label"]["name"] = label
    data["label"]["url"] = data["label"]["url"].rsplit("/", 1)[0] + f"/{label}"
    data["issue"]["labels"][-1] = copy.deepcopy(data["label"])
    _issue_fields(data["issue"], number, title, body)
    return data


def issues_opened(*, login: str = "octocat", number: int | None = None,
                  title: str | None = None, body: str | None = None,
                  **where: Any) -> dict[str, Any]:
    """An `issues.opened` delivery."""
    data = payload("issues", "opened", **where)
    _people(data, login, "User", "issue")
    _issue_fields(data["issue"], number, title, body)
    return data


def _issue_fields(issue: dict[str, Any], number: int | None, title: str | None,
                  body: str | None) -> None:
    if number is not None:
        _renumber(issue, number)
    if title is not None:
        issue["title"] = title
    if body is not None:
        issue["body"] = body


def review_comment(body: str = "/agent log to stderr through the logging module, not print()",
                   *, login: str = "octocat", sender_type: str = "User",
                   path: str = "hello/cli.py", line: int | None = 12,
                   diff_hunk: str | None = None, pull_number: int | None = None,
                   head_ref: str | None = None, head_sha: str | None = None,
                   base_ref: str | None = None, base_sha: str | None = None,
                   fork: bool = False, **where: Any) -> dict[str, Any]:
    """A `pull_request_review_comment.created` delivery (a fork PR's head is `login`'s fork)."""
    data = payload("pull_request_review_comment", "created", **where)
    _people(data, login, sender_type, "comment")
    comment, pull = data["comment"], data["pull_request"]
    comment.update(body=body, path=path, line=line, original_line=line)
    if diff_hunk is not None:
        comment["diff_hunk"] = diff_hunk
    if pull_number is not None:
        text = json.dumps(data).replace(f"/pulls/{pull['number']}", f"/pulls/{pull_number}") \
            .replace(f"/pull/{pull['number']}", f"/pull/{pull_number}") \
            .replace(f"/issues/{pull['number']}", f"/issues/{pull_number}")
        data = json.loads(text)
        comment, pull = data["comment"], data["pull_request"]
        pull["number"] = pull_number
    for side, ref, sha in (("head", head_ref, head_sha), ("base", base_ref, base_sha)):
        if ref is not None:
            pull[side].update(ref=ref, label=f"{pull[side]['user']['login']}:{ref}")
        if sha is not None:
            pull[side]["sha"] = sha
    if head_sha is not None:
        comment.update(commit_id=head_sha, original_commit_id=head_sha)
    if fork:
        head = pull["head"]
        head["user"] = user(login)
        head["repo"] = copy.deepcopy(pull["base"]["repo"])
        head["repo"].update(fork=True, owner=user(login), id=head["repo"]["id"] + 1,
                            full_name=f"{login}/{head['repo']['name']}")
        head["label"] = f"{login}:{head['ref']}"
    return data


def check_run_action(identifier: str = "retry", *, login: str = "octocat",
                     sender_type: str = "User", **fields: Any) -> dict[str, Any]:
    """A `check_run.requested_action` delivery (a button press on agentbot's check run)."""
    return _check_run("requested_action", login, sender_type, fields,
                      requested_action={"identifier": identifier})


def check_run_rerequested(*, login: str = "octocat", sender_type: str = "User",
                          **fields: Any) -> dict[str, Any]:
    """A `check_run.rerequested` delivery ("Re-run" on agentbot's check run)."""
    return _check_run("rerequested", login, sender_type, fields)


def _check_run(action: str, login: str, sender_type: str, fields: dict[str, Any],
               **extra: Any) -> dict[str, Any]:
    where = {k: fields.pop(k) for k in ("owner", "repo", "repo_id", "installation_id")
             if k in fields}
    data = payload("check_run", action, **where, **extra)
    data["sender"] = user(login, sender_type)
    _merge(data["check_run"], fields)  # e.g. id=..., head_sha=..., external_id=...
    return data


def installation_event(action: str = "created", *, installation_id: int = INSTALLATION_ID,
                       account: str = OWNER, login: str = "octocat") -> dict[str, Any]:
    """An `installation.created` or `installation.deleted` delivery."""
    data = payload("installation", action, installation_id=installation_id)
    data["installation"]["account"] = user(account, "Organization")
    data["sender"] = user(login)
    return data


def ping() -> dict[str, Any]:
    """The `ping` GitHub sends when the App's webhook is set up."""
    return payload("ping")


def encode(data: dict[str, Any]) -> bytes:
    """The body GitHub would send for a payload (compact JSON, UTF-8)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def sign(body: bytes, secret: str) -> str:
    """`X-Hub-Signature-256` for a body: `sha256=` and the HMAC-SHA256 hex digest."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(event: str, delivery_id: str, body: bytes, secret: str) -> dict[str, str]:
    """The headers of a GitHub App webhook delivery, signed with `secret`."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/7e8a3b1",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": "512345678",
        "X-GitHub-Hook-Installation-Target-ID": str(APP_ID),
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-Hub-Signature-256": sign(body, secret),
    }
