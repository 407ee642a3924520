"""JSON the fake GitHub answers with, shaped as the REST description's response schemas say."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from tests.fakes.github_state import (
    CheckRun,
    Comment,
    Installation,
    Issue,
    Reaction,
    Repo,
    ReviewComment,
    User,
    iso,
)

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub

# The `*_url` members every repository object carries: name -> path below the repo's API url.
_REPO_LINKS = {
    "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}", "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}", "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}", "contributors_url": "/contributors",
    "deployments_url": "/deployments", "downloads_url": "/downloads", "events_url": "/events",
    "forks_url": "/forks", "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}", "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks", "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}", "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}", "labels_url": "/labels{/name}", "languages_url": "/languages",
    "merges_url": "/merges", "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}", "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}", "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}", "subscribers_url": "/subscribers",
    "subscription_url": "/subscription", "tags_url": "/tags", "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}


def node_id(kind: str, number: int) -> str:
    """An opaque global id in the style GitHub's REST answers carry."""
    return base64.b64encode(f"0:{kind}{number}".encode()).decode().rstrip("=")


def user(f: FakeGitHub, u: User) -> dict[str, Any]:
    api = f"{f.url}/users/{u.login}"
    html = f"{f.html_url}/apps/{u.login.removesuffix('[bot]')}" if u.type == "Bot" \
        else f"{f.html_url}/{u.login}"
    return {
        "login": u.login, "id": u.id, "node_id": node_id(u.type, u.id),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{u.id}?v=4", "gravatar_id": "",
        "url": api, "html_url": html, "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}", "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions", "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events", "type": u.type, "site_admin": False,
        "user_view_type": "public",
    }


def repository(f: FakeGitHub, repo: Repo, full: bool = False) -> dict[str, Any]:
    """A `repository` object; `full` adds what `GET /repos/{owner}/{repo}` adds."""
    api, html = f"{f.url}/repos/{repo.full_name}", f"{f.html_url}/{repo.full_name}"
    pushed = max((f.state.now(), repo.created_at))
    out: dict[str, Any] = {
        "id": repo.id, "node_id": node_id("Repository", repo.id), "name": repo.name,
        "full_name": repo.full_name, "owner": user(f, repo.owner), "private": repo.private,
        "html_url": html, "description": None, "fork": repo.fork_of is not None, "url": api,
        **{key: api + suffix for key, suffix in _REPO_LINKS.items()},
        "clone_url": f.clone_url(repo), "git_url": f"git://github.com/{repo.full_name}.git",
        "ssh_url": f"git@github.com:{repo.full_name}.git", "svn_url": html, "mirror_url": None,
        "homepage": None, "language": "Python", "forks": 0, "forks_count": 0,
        "stargazers_count": 0, "watchers": 0, "watchers_count": 0, "size": 0,
        "default_branch": repo.default_branch, "open_issues": 0, "open_issues_count": 0,
        "is_template": False, "topics": [], "has_issues": True, "has_projects": True,
        "has_wiki": True, "has_pages": False, "has_downloads": True, "has_discussions": False,
        "archived": False, "disabled": False, "visibility": "private" if repo.private else "public",
        "pushed_at": iso(pushed), "created_at": iso(repo.created_at), "updated_at": iso(pushed),
        "license": None, "allow_forking": True, "web_commit_signoff_required": False,
    }
    if full:
        out.update(network_count=0, subscribers_count=0, temp_clone_token=None)
        if repo.fork_of is not None:
            out["parent"] = out["source"] = repository(f, repo.fork_of)
    return out


def app(f: FakeGitHub) -> dict[str, Any]:
    """The App itself (`integration`)."""
    created = iso(f.state.now() - 86400 * 30)
    return {
        "id": f.app_id, "slug": f.app_slug, "node_id": node_id("Integration", f.app_id),
        "client_id": f"Iv1.{f.app_id:016x}",
        "owner": user(f, f.state.user(f.app_owner, "Organization")),
        "name": f.app_slug, "description": "Hands issues to coding agents.",
        "external_url": f"https://{f.app_slug}.example.com",
        "html_url": f"{f.html_url}/apps/{f.app_slug}", "created_at": created,
        "updated_at": created, "permissions": dict(f.app_permissions),
        "events": list(f.app_events), "installations_count": len(f.state.installations),
    }


def installation(f: FakeGitHub, inst: Installation) -> dict[str, Any]:
    return {
        "id": inst.id, "client_id": f"Iv1.{f.app_id:016x}", "account": user(f, inst.account),
        "repository_selection": inst.repository_selection,
        "access_tokens_url": f"{f.url}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{f.url}/installation/repositories",
        "html_url": f"{f.html_url}/organizations/{inst.account.login}/settings/installations/"
                    f"{inst.id}",
        "app_id": f.app_id, "app_slug": f.app_slug, "target_id": inst.account.id,
        "target_type": inst.account.type, "permissions": dict(inst.permissions),
        "events": list(inst.events), "created_at": iso(inst.created_at),
        "updated_at": iso(inst.created_at), "single_file_name": None,
        "has_multiple_single_files": False, "single_file_paths": [], "suspended_by": None,
        "suspended_at": None,
    }


def association(repo: Repo, who: User) -> str:
    if who.login == repo.owner.login:
        return "OWNER"
    return "COLLABORATOR" if who.login in repo.collaborators else "NONE"


def rollup(f: FakeGitHub, url: str, subject: tuple[str, int]) -> dict[str, Any]:
    counts = {k: 0 for k in ("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket")}
    for reaction in f.state.reactions:
        if reaction.subject == subject:
            counts[reaction.content] += 1
    return {"url": f"{url}/reactions", "total_count": sum(counts.values()), **counts}


def label(f: FakeGitHub, repo: Repo, name: str) -> dict[str, Any]:
    number = f.state.label_id(name)
    return {"id": number, "node_id": node_id("Label", number), "name": name,
            "url": f"{f.url}/repos/{repo.full_name}/labels/{name}", "color": "ededed",
            "default": False, "description": None}


def issue(f: FakeGitHub, i: Issue) -> dict[str, Any]:
    api = f"{f.url}/repos/{i.repo.full_name}/issues/{i.number}"
    kind = "pull" if i.pull else "issues"
    html = f"{f.html_url}/{i.repo.full_name}/{kind}/{i.number}"
    count = sum(1 for c in f.state.comments.values()
                if c.repo is i.repo and c.issue_number == i.number)
    out = {
        "id": i.id, "node_id": node_id("Issue", i.id), "url": api,
        "repository_url": f"{f.url}/repos/{i.repo.full_name}",
        "labels_url": f"{api}/labels{{/name}}", "comments_url": f"{api}/comments",
        "events_url": f"{api}/events", "html_url": html, "number": i.number, "state": i.state,
        "state_reason": None, "title": i.title, "body": i.body, "user": user(f, i.user),
        "labels": [label(f, i.repo, name) for name in i.labels], "assignee": None,
        "assignees": [], "milestone": None, "locked": False, "active_lock_reason": None,
        "comments": count, "closed_at": None, "created_at": iso(i.created_at),
        "updated_at": iso(i.updated_at), "closed_by": None,
        "author_association": association(i.repo, i.user),
        "reactions": rollup(f, api, ("issue", i.id)), "timeline_url": f"{api}/timeline",
        "performed_via_github_app": None,
    }
    if i.pull:
        pulls = f"{f.url}/repos/{i.repo.full_name}/pulls/{i.number}"
        out["pull_request"] = {"url": pulls, "html_url": html, "diff_url": f"{html}.diff",
                               "patch_url": f"{html}.patch", "merged_at": None}
        out["draft"] = i.pull.draft
    return out


def comment(f: FakeGitHub, c: Comment) -> dict[str, Any]:
    api = f"{f.url}/repos/{c.repo.full_name}/issues/comments/{c.id}"
    issue_row = f.state.issues[(c.repo.full_name, c.issue_number)]
    kind = "pull" if issue_row.pull else "issues"
    return {
        "id": c.id, "node_id": node_id("IssueComment", c.id), "url": api,
        "html_url": f"{f.html_url}/{c.repo.full_name}/{kind}/{c.issue_number}"
                    f"#issuecomment-{c.id}",
        "body": c.body, "user": user(f, c.user), "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at),
        "issue_url": f"{f.url}/repos/{c.repo.full_name}/issues/{c.issue_number}",
        "author_association": association(c.repo, c.user),
        "performed_via_github_app": app(f) if c.via_app else None,
        "reactions": rollup(f, api, ("comment", c.id)),
    }


def review_comment(f: FakeGitHub, c: ReviewComment) -> dict[str, Any]:
    api = f"{f.url}/repos/{c.repo.full_name}/pulls/comments/{c.id}"
    pull_api = f"{f.url}/repos/{c.repo.full_name}/pulls/{c.pull_number}"
    html = f"{f.html_url}/{c.repo.full_name}/pull/{c.pull_number}#discussion_r{c.id}"
    out = {
        "url": api, "id": c.id, "node_id": node_id("PullRequestReviewComment", c.id),
        "pull_request_review_id": c.id + 1, "diff_hunk": c.diff_hunk, "path": c.path,
        "commit_id": c.commit_id, "original_commit_id": c.commit_id, "user": user(f, c.user),
        "body": c.body, "created_at": iso(c.created_at), "updated_at": iso(c.created_at),
        "html_url": html, "pull_request_url": pull_api,
        "author_association": association(c.repo, c.user),
        "_links": {"self": {"href": api}, "html": {"href": html},
                   "pull_request": {"href": pull_api}},
        "side": "RIGHT", "start_line": None, "original_start_line": None, "start_side": None,
        "subject_type": "line" if c.line else "file",
        "reactions": rollup(f, api, ("review_comment", c.id)),
    }
    if c.line:
        out.update(line=c.line, original_line=c.line)
    if c.in_reply_to:
        out["in_reply_to_id"] = c.in_reply_to
    return out


def reaction(f: FakeGitHub, r: Reaction) -> dict[str, Any]:
    return {"id": r.id, "node_id": node_id("Reaction", r.id), "user": user(f, r.user),
            "content": r.content, "created_at": iso(r.created_at)}


def check_run(f: FakeGitHub, run: CheckRun) -> dict[str, Any]:
    api = f"{f.url}/repos/{run.repo.full_name}/check-runs/{run.id}"
    output = run.output
    pulls = [i for i in f.state.pulls(run.repo) if i.pull and i.pull.head_sha == run.head_sha]
    return {
        "id": run.id, "node_id": node_id("CheckRun", run.id), "head_sha": run.head_sha,
        "external_id": run.external_id, "url": api,
        "html_url": f"{f.html_url}/{run.repo.full_name}/runs/{run.id}",
        "details_url": run.details_url, "status": run.status, "conclusion": run.conclusion,
        "started_at": iso(run.started_at), "completed_at": iso(run.completed_at),
        "output": {"title": output.get("title"), "summary": output.get("summary"),
                   "text": output.get("text"), "annotations_count": output.get("annotations", 0),
                   "annotations_url": f"{api}/annotations"},
        "name": run.name, "check_suite": {"id": run.suite_id}, "app": app(f),
        "pull_requests": [pull_minimal(f, i) for i in pulls],
    }


def pull_minimal(f: FakeGitHub, i: Issue) -> dict[str, Any]:
    assert i.pull is not None
    def side(ref: str, sha: str, repo: Repo) -> dict[str, Any]:
        return {"ref": ref, "sha": sha, "repo": {"id": repo.id, "name": repo.name,
                                                  "url": f"{f.url}/repos/{repo.full_name}"}}
    base_sha = i.repo.git.resolve(i.pull.base_ref) or ""
    return {"id": i.id, "number": i.number,
            "url": f"{f.url}/repos/{i.repo.full_name}/pulls/{i.number}",
            "head": side(i.pull.head_ref, i.pull.head_sha, i.pull.head_repo),
            "base": side(i.pull.base_ref, base_sha, i.repo)}
