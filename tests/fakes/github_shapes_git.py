"""JSON for pull requests, branches, contents and Git Data objects of the fake GitHub."""

from __future__ import annotations

import base64
import difflib
from hashlib import sha1
from typing import TYPE_CHECKING, Any

from tests.fakes.github_git import api_mode, kind_of_mode
from tests.fakes.github_shapes import association, label, node_id, repository, user
from tests.fakes.github_state import Issue, Repo, iso

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub

CONTENT_LIMIT = 1024 * 1024  # the contents API's limit for a file's content in its JSON


def pull_request(f: FakeGitHub, i: Issue, simple: bool = False) -> dict[str, Any]:
    """A `pull-request` (or, with `simple`, a `pull-request-simple` as lists return)."""
    pull = i.pull
    assert pull is not None
    full, api = i.repo.full_name, f"{f.url}/repos/{i.repo.full_name}/pulls/{i.number}"
    html = f"{f.html_url}/{full}/pull/{i.number}"
    issue_api = f"{f.url}/repos/{full}/issues/{i.number}"
    base_sha = i.repo.git.resolve(pull.base_ref) or ""

    def side(ref: str, sha: str, repo: Repo) -> dict[str, Any]:
        return {"label": f"{repo.owner.login}:{ref}", "ref": ref, "sha": sha,
                "user": user(f, repo.owner), "repo": repository(f, repo)}

    out = {
        "url": api, "id": pull.id, "node_id": node_id("PullRequest", pull.id), "html_url": html,
        "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "issue_url": issue_api,
        "commits_url": f"{api}/commits", "review_comments_url": f"{api}/comments",
        "review_comment_url": f"{f.url}/repos/{full}/pulls/comments{{/number}}",
        "comments_url": f"{issue_api}/comments",
        "statuses_url": f"{f.url}/repos/{full}/statuses/{pull.head_sha}",
        "number": i.number, "state": i.state, "locked": False, "title": i.title,
        "user": user(f, i.user), "body": i.body,
        "labels": [label(f, i.repo, name) for name in i.labels], "milestone": None,
        "active_lock_reason": None, "created_at": iso(i.created_at),
        "updated_at": iso(i.updated_at), "closed_at": None, "merged_at": None,
        "merge_commit_sha": None, "assignee": None, "assignees": [],
        "requested_reviewers": [user(f, u) for u in pull.requested_reviewers],
        "requested_teams": [], "head": side(pull.head_ref, pull.head_sha, pull.head_repo),
        "base": side(pull.base_ref, base_sha, i.repo),
        "_links": {name: {"href": href} for name, href in (
            ("self", api), ("html", html), ("issue", issue_api),
            ("comments", f"{issue_api}/comments"), ("review_comments", f"{api}/comments"),
            ("review_comment", f"{f.url}/repos/{full}/pulls/comments{{/number}}"),
            ("commits", f"{api}/commits"),
            ("statuses", f"{f.url}/repos/{full}/statuses/{pull.head_sha}"))},
        "author_association": association(i.repo, i.user), "auto_merge": None,
        "draft": pull.draft,
    }
    if not simple:
        commits, changed, added, deleted = _compare(i.repo, base_sha, pull)
        out.update(merged=pull.merged, mergeable=None, rebaseable=None,
                   mergeable_state="unknown", merged_by=None, comments=0,
                   review_comments=sum(1 for c in f.state.review_comments.values()
                                       if c.repo is i.repo and c.pull_number == i.number),
                   maintainer_can_modify=False, commits=commits, additions=added,
                   deletions=deleted, changed_files=changed)
    return out


def _compare(repo: Repo, base_sha: str, pull: Any) -> tuple[int, int, int, int]:
    """Commits ahead, files changed, lines added and deleted, from the objects the fake holds."""
    git = pull.head_repo.git
    if git.kind(pull.head_sha) != "commit" or repo.git.kind(base_sha) != "commit":
        return 0, 0, 0, 0
    seen, todo, ahead = set(), [pull.head_sha], 0
    while todo:
        sha = todo.pop()
        if sha in seen or sha == base_sha or git.kind(sha) != "commit":
            continue
        seen.add(sha)
        ahead += 1
        todo += git.read_commit(sha)["parents"]
    before, after = repo.git.files(base_sha), git.files(pull.head_sha)
    added = deleted = 0
    changed = [p for p in before.keys() | after.keys() if before.get(p) != after.get(p)]
    for path in changed:
        old = before.get(path, ("", b""))[1].decode(errors="replace").splitlines()
        new = after.get(path, ("", b""))[1].decode(errors="replace").splitlines()
        for line in difflib.ndiff(old, new):
            added += line.startswith("+ ")
            deleted += line.startswith("- ")
    return ahead, len(changed), added, deleted


def git_commit(f: FakeGitHub, repo: Repo, sha: str) -> dict[str, Any]:
    data = repo.git.read_commit(sha)
    api = f"{f.url}/repos/{repo.full_name}/git/commits"
    html = f"{f.html_url}/{repo.full_name}/commit"

    def who(person: Any) -> dict[str, str]:
        return {"name": person.name, "email": person.email, "date": iso(person.epoch) or ""}

    return {
        "sha": sha, "node_id": node_id("Commit", int(sha[:8], 16)), "url": f"{api}/{sha}",
        "html_url": f"{html}/{sha}", "author": who(data["author"]),
        "committer": who(data["committer"]), "message": data["message"],
        "tree": {"sha": data["tree"], "url": f"{f.url}/repos/{repo.full_name}/git/trees/"
                                             f"{data['tree']}"},
        "parents": [{"sha": p, "url": f"{api}/{p}", "html_url": f"{html}/{p}"}
                    for p in data["parents"]],
        "verification": {"verified": False, "reason": "unsigned", "signature": None,
                         "payload": None, "verified_at": None},
    }


def commit(f: FakeGitHub, repo: Repo, sha: str) -> dict[str, Any]:
    """A `commit` (the repos API's shape, as branches embed it)."""
    git = git_commit(f, repo, sha)
    api = f"{f.url}/repos/{repo.full_name}/commits/{sha}"
    return {
        "sha": sha, "node_id": git["node_id"], "url": api, "html_url": git["html_url"],
        "comments_url": f"{api}/comments", "author": None, "committer": None,
        "commit": {"url": git["url"], "author": git["author"], "committer": git["committer"],
                   "message": git["message"], "tree": git["tree"], "comment_count": 0,
                   "verification": git["verification"]},
        "parents": [{"sha": p["sha"], "url": f"{f.url}/repos/{repo.full_name}/commits/"
                                             f"{p['sha']}", "html_url": p["html_url"]}
                    for p in git["parents"]],
    }


def tree(f: FakeGitHub, repo: Repo, sha: str, recursive: bool) -> dict[str, Any]:
    base = f"{f.url}/repos/{repo.full_name}/git"
    rows: list[dict[str, Any]] = []

    def walk(tree_sha: str, prefix: str) -> None:
        for mode, name, obj in repo.git.entries(tree_sha):
            kind = kind_of_mode(mode)
            row: dict[str, Any] = {"path": prefix + name, "mode": api_mode(mode),
                                   "type": kind, "sha": obj}
            if kind == "blob":
                row.update(size=len(repo.git.get(obj)), url=f"{base}/blobs/{obj}")
            elif kind == "tree":
                row["url"] = f"{base}/trees/{obj}"
            rows.append(row)
            if kind == "tree" and recursive:
                walk(obj, f"{prefix}{name}/")

    walk(sha, "")
    return {"sha": sha, "url": f"{base}/trees/{sha}", "tree": rows, "truncated": False}


def ref(f: FakeGitHub, repo: Repo, name: str) -> dict[str, Any]:
    sha = repo.git.refs[name]
    kind = repo.git.kind(sha) or "commit"
    digest = sha1(name.encode(), usedforsecurity=False).hexdigest()
    return {"ref": name, "node_id": node_id("Ref", int(digest[:8], 16)),
            "url": f"{f.url}/repos/{repo.full_name}/git/{name}",
            "object": {"type": kind, "sha": sha,
                       "url": f"{f.url}/repos/{repo.full_name}/git/{kind}s/{sha}"}}


def blob(f: FakeGitHub, repo: Repo, sha: str) -> dict[str, Any]:
    data = repo.git.get(sha, "blob")
    return {"sha": sha, "node_id": node_id("Blob", int(sha[:8], 16)), "size": len(data),
            "url": f"{f.url}/repos/{repo.full_name}/git/blobs/{sha}",
            "content": _b64_lines(data), "encoding": "base64"}


def branch(f: FakeGitHub, repo: Repo, name: str) -> dict[str, Any]:
    sha = repo.git.refs[f"refs/heads/{name}"]
    api = f"{f.url}/repos/{repo.full_name}/branches/{name}"
    return {"name": name, "commit": commit(f, repo, sha),
            "_links": {"self": api, "html": f"{f.html_url}/{repo.full_name}/tree/{name}"},
            "protected": False, "protection": {"enabled": False, "required_status_checks": {
                "enforcement_level": "off", "contexts": [], "checks": []}},
            "protection_url": f"{api}/protection"}


def content(f: FakeGitHub, repo: Repo, path: str, commit_sha: str) -> Any:
    """A `content-file` for a file, a `content-directory` list for a directory, or None."""
    flat = repo.git.flatten(repo.git.read_commit(commit_sha)["tree"])
    path = path.strip("/")
    if path in flat:
        mode, sha = flat[path]
        row = _content_row(f, repo, path, mode, sha, commit_sha)
        if row["type"] == "file" and row["size"] > CONTENT_LIMIT:
            # GitHub serves 1-100 MB files' metadata only; the raw media type has the bytes.
            row.update(content="", encoding="none")
        elif row["type"] == "file":
            row.update(content=_b64_lines(repo.git.get(sha)), encoding="base64")
        elif row["type"] == "symlink":
            row["target"] = repo.git.get(sha).decode()
        elif row["type"] == "submodule":
            row["submodule_git_url"] = f"{f.html_url}/{repo.full_name}-{path}.git"
        return row
    prefix = path + "/" if path else ""
    names: dict[str, tuple[str, str]] = {}
    for mode, name, sha in _entries_at(repo, commit_sha, path):
        names[name] = (mode, sha)
    if not names and not any(p.startswith(prefix) for p in flat):
        return None
    return [_content_row(f, repo, prefix + name, mode, sha, commit_sha)
            for name, (mode, sha) in sorted(names.items())]


def _entries_at(repo: Repo, commit_sha: str, path: str) -> list[tuple[str, str, str]]:
    tree_sha = repo.git.read_commit(commit_sha)["tree"]
    for part in [p for p in path.split("/") if p]:
        found = [e for e in repo.git.entries(tree_sha) if e[1] == part and e[0] == "40000"]
        if not found:
            return []
        tree_sha = found[0][2]
    return repo.git.entries(tree_sha)


def _content_row(f: FakeGitHub, repo: Repo, path: str, mode: str, sha: str,
                 commit_sha: str) -> dict[str, Any]:
    kind = {"40000": "dir", "160000": "submodule", "120000": "symlink"}.get(mode, "file")
    api = f"{f.url}/repos/{repo.full_name}/contents/{path}?ref={commit_sha}"
    html = f"{f.html_url}/{repo.full_name}/blob/{commit_sha}/{path}"
    git = f"{f.url}/repos/{repo.full_name}/git/{'trees' if kind == 'dir' else 'blobs'}/{sha}"
    size = len(repo.git.get(sha)) if kind in ("file", "symlink") else 0
    download = f"https://raw.githubusercontent.com/{repo.full_name}/{commit_sha}/{path}"
    return {"type": kind, "name": path.rsplit("/", 1)[-1], "path": path, "sha": sha,
            "size": size, "url": api, "html_url": html, "git_url": git,
            "download_url": download if kind == "file" else None,
            "_links": {"self": api, "git": git, "html": html}}


def _b64_lines(data: bytes) -> str:
    # GitHub wraps base64 content at 60 characters; clients must cope with the newlines.
    text = base64.b64encode(data).decode()
    return "".join(text[i:i + 60] + "\n" for i in range(0, len(text), 60))
