"""A realistic ~12 KB `issues.labeled` delivery, shaped the way GitHub sends it."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

API = "https://api.github.com"
WEB = "https://github.com"
ORG, REPO = "acme-platform", "order-service"
FULL_NAME = f"{ORG}/{REPO}"
NUMBER = 1874

WEBHOOK_SCHEMAS = Path(__file__).resolve().parent.parent / "tests/fakes/schemas/webhooks.json"

ISSUE_BODY = """### What happened

After the upgrade to 4.12 the nightly reconciliation job stops half-way through the
`settlements` table and leaves the batch in `PARTIAL`. The worker log shows the pool
running dry after the first 10,000 rows:

```
ERROR reconcile: acquire timed out after 30s (pool size 20, in use 20)
```

### Steps to reproduce

1. `make seed ROWS=50000`, then `./bin/reconcile --date 2024-05-13 --workers 8`.
2. Connections stay `idle in transaction` after each chunk.

- version: 4.12.0, PostgreSQL 15.6
"""


def user(login: str, user_id: int, kind: str = "User") -> dict[str, Any]:
    """A user object with every URL GitHub includes."""
    base = f"{API}/users/{login}"
    return {
        "login": login,
        "id": user_id,
        "node_id": f"MDQ6VXNlcj{user_id:08d}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "gravatar_id": "",
        "url": base,
        "html_url": f"{WEB}/{login}",
        "followers_url": f"{base}/followers",
        "following_url": f"{base}/following{{/other_user}}",
        "gists_url": f"{base}/gists{{/gist_id}}",
        "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{base}/subscriptions",
        "organizations_url": f"{base}/orgs",
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events{{/privacy}}",
        "received_events_url": f"{base}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


def label(name: str, label_id: int, color: str, description: str) -> dict[str, Any]:
    """A label object."""
    return {
        "id": label_id,
        "node_id": f"LA_kwDOB{label_id:010d}",
        "url": f"{API}/repos/{FULL_NAME}/labels/{name}",
        "name": name,
        "color": color,
        "default": name == "bug",
        "description": description,
    }


def repository() -> dict[str, Any]:
    """The repository object of a webhook: all of its URL templates and settings."""
    base = f"{API}/repos/{FULL_NAME}"
    templates = {
        "forks_url": "/forks", "keys_url": "/keys{/key_id}",
        "collaborators_url": "/collaborators{/collaborator}", "teams_url": "/teams",
        "hooks_url": "/hooks", "issue_events_url": "/issues/events{/number}",
        "events_url": "/events", "assignees_url": "/assignees{/user}",
        "branches_url": "/branches{/branch}", "tags_url": "/tags",
        "blobs_url": "/git/blobs{/sha}", "git_tags_url": "/git/tags{/sha}",
        "git_refs_url": "/git/refs{/sha}", "trees_url": "/git/trees{/sha}",
        "statuses_url": "/statuses/{sha}", "languages_url": "/languages",
        "stargazers_url": "/stargazers", "contributors_url": "/contributors",
        "subscribers_url": "/subscribers", "subscription_url": "/subscription",
        "commits_url": "/commits{/sha}", "git_commits_url": "/git/commits{/sha}",
        "comments_url": "/comments{/number}", "issue_comment_url": "/issues/comments{/number}",
        "contents_url": "/contents/{+path}", "compare_url": "/compare/{base}...{head}",
        "merges_url": "/merges", "archive_url": "/{archive_format}{/ref}",
        "downloads_url": "/downloads", "issues_url": "/issues{/number}",
        "pulls_url": "/pulls{/number}", "milestones_url": "/milestones{/number}",
        "notifications_url": "/notifications{?since,all,participating}",
        "labels_url": "/labels{/name}", "releases_url": "/releases{/id}",
        "deployments_url": "/deployments",
    }
    repo: dict[str, Any] = {
        "id": 734512098,
        "node_id": "R_kgDOK8dX4g",
        "name": REPO,
        "full_name": FULL_NAME,
        "private": True,
        "owner": user(ORG, 81234567, "Organization"),
        "html_url": f"{WEB}/{FULL_NAME}",
        "description": "Order intake, settlement and reconciliation for the storefront",
        "fork": False,
        "url": base,
    }
    repo.update({key: base + suffix for key, suffix in templates.items()})
    repo.update({
        "created_at": "2023-12-20T09:41:12Z",
        "updated_at": "2024-05-14T07:02:44Z",
        "pushed_at": "2024-05-14T06:58:03Z",
        "git_url": f"git://github.com/{FULL_NAME}.git",
        "ssh_url": f"git@github.com:{FULL_NAME}.git",
        "clone_url": f"{WEB}/{FULL_NAME}.git",
        "svn_url": f"{WEB}/{FULL_NAME}",
        "homepage": "https://orders.acme-platform.example",
        "size": 48211, "stargazers_count": 37, "watchers_count": 37,
        "language": "Python", "has_issues": True, "has_projects": True,
        "has_downloads": True, "has_wiki": False, "has_pages": False,
        "has_discussions": False, "forks_count": 4, "mirror_url": None,
        "archived": False, "disabled": False, "open_issues_count": 58,
        "license": {"key": "apache-2.0", "name": "Apache License 2.0",
                    "spdx_id": "Apache-2.0", "url": f"{API}/licenses/apache-2.0",
                    "node_id": "MDc6TGljZW5zZTI="},
        "allow_forking": False, "is_template": False,
        "web_commit_signoff_required": False,
        "topics": ["orders", "payments", "postgresql", "python"],
        "visibility": "private", "forks": 4, "open_issues": 58, "watchers": 37,
        "default_branch": "main",
        "custom_properties": {"team": "payments", "tier": "1"},
    })
    return repo


def issue(reporter: dict[str, Any], assignee: dict[str, Any],
          labels: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue object, with its labels, assignee, milestone and reactions."""
    base = f"{API}/repos/{FULL_NAME}/issues/{NUMBER}"
    return {
        "url": base,
        "repository_url": f"{API}/repos/{FULL_NAME}",
        "labels_url": f"{base}/labels{{/name}}",
        "comments_url": f"{base}/comments",
        "events_url": f"{base}/events",
        "html_url": f"{WEB}/{FULL_NAME}/issues/{NUMBER}",
        "id": 2296410837,
        "node_id": "I_kwDOK8dX4s6I4xHV",
        "number": NUMBER,
        "title": "Nightly reconciliation leaves batches PARTIAL after 4.12 upgrade",
        "user": reporter,
        "labels": labels,
        "state": "open",
        "locked": False,
        "assignee": assignee,
        "assignees": [assignee],
        "milestone": None,
        "comments": 3,
        "created_at": "2024-05-14T06:51:19Z",
        "updated_at": "2024-05-14T07:02:44Z",
        "closed_at": None,
        "author_association": "MEMBER",
        "active_lock_reason": None,
        "body": ISSUE_BODY,
        "reactions": {"url": f"{base}/reactions", "total_count": 2, "+1": 2, "-1": 0,
                      "laugh": 0, "hooray": 0, "confused": 0, "heart": 0, "rocket": 0,
                      "eyes": 0},
        "timeline_url": f"{base}/timeline",
        "performed_via_github_app": None,
        "state_reason": None,
    }


def issues_labeled(label_name: str = "bug") -> dict[str, Any]:
    """An `issues.labeled` payload as GitHub delivers it to an App."""
    reporter = user("mira-okafor", 5523817)
    maintainer = user("jonas-weber", 1190442)
    added = label(label_name, 6129874412, "d73a4a", "Something isn't working")
    labels = [label("area/reconcile", 6129874501, "1d76db", "Reconciliation jobs"), added]
    return {
        "action": "labeled",
        "issue": issue(reporter, maintainer, labels),
        "label": added,
        "repository": repository(),
        "organization": {
            "login": ORG, "id": 81234567, "node_id": "O_kgDOBNeBhw",
            "url": f"{API}/orgs/{ORG}", "repos_url": f"{API}/orgs/{ORG}/repos",
            "events_url": f"{API}/orgs/{ORG}/events", "hooks_url": f"{API}/orgs/{ORG}/hooks",
            "issues_url": f"{API}/orgs/{ORG}/issues",
            "members_url": f"{API}/orgs/{ORG}/members{{/member}}",
            "public_members_url": f"{API}/orgs/{ORG}/public_members{{/member}}",
            "avatar_url": "https://avatars.githubusercontent.com/u/81234567?v=4",
            "description": "Storefront platform team",
        },
        "sender": maintainer,
        "installation": {"id": 49871203,
                         "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDk4NzEyMDM="},
    }


def encode(payload: dict[str, Any]) -> bytes:
    """The body bytes as GitHub sends them (compact JSON)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def sign(body: bytes, secret: str) -> str:
    """The `X-Hub-Signature-256` header value for a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def schema_errors(payload: dict[str, Any]) -> list[str]:
    """Where the payload breaks GitHub's published `issues.labeled` schema (empty: valid)."""
    from jsonschema import Draft202012Validator

    document = json.loads(WEBHOOK_SCHEMAS.read_text())
    schema = {"$ref": "#/components/schemas/webhook-issues-labeled",
              "components": document["components"]}
    validator = Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(payload)]
