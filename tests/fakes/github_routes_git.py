"""The fake GitHub's contents, branch and Git Data endpoints (blobs, trees, commits, refs)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from tests.fakes import github_shapes_git as shapes
from tests.fakes.github_git import Person, git_mode, kind_of_mode
from tests.fakes.github_http import ApiError, Call, Reply, not_found, route, unprocessable
from tests.fakes.github_state import Repo, parse_iso

_BAD_PARTS = {"", ".", "..", ".git"}


@route("repos/get-content")
def get_content(call: Call) -> Reply:
    repo = call.need_repo()
    sha = repo.git.resolve(call.query.get("ref", repo.default_branch))
    if sha is None:
        raise ApiError(404, f"No commit found for the ref {call.query.get('ref')}")
    found = shapes.content(call.fake, repo, call.params["path"], sha)
    if found is None:
        raise not_found()
    return Reply(200, found)


@route("repos/get-branch")
def get_branch(call: Call) -> Reply:
    repo = call.need_repo()
    if f"refs/heads/{call.params['branch']}" not in repo.git.refs:
        raise ApiError(404, "Branch not found")
    return Reply(200, shapes.branch(call.fake, repo, call.params["branch"]))


@route("git/create-blob")
def create_blob(call: Call) -> Reply:
    repo, body = call.need_repo(), call.body()
    encoding = body.get("encoding", "utf-8")
    if encoding == "base64":
        try:
            data = base64.b64decode(body["content"], validate=False)
        except binascii.Error as exc:
            raise unprocessable("content is not valid Base64", "content") from exc
    elif encoding in ("utf-8", "utf8"):
        data = body["content"].encode()
    else:
        raise unprocessable(f"encoding must be utf-8 or base64, not {encoding}", "encoding")
    sha = repo.git.blob(data)
    return Reply(201, {"sha": sha,
                       "url": f"{call.fake.url}/repos/{repo.full_name}/git/blobs/{sha}"})


@route("git/get-blob")
def get_blob(call: Call) -> Reply:
    repo = call.need_repo()
    if repo.git.kind(call.params["file_sha"]) != "blob":
        raise not_found()
    return Reply(200, shapes.blob(call.fake, repo, call.params["file_sha"]))


@route("git/create-tree")
def create_tree(call: Call) -> Reply:
    repo, body = call.need_repo(), call.body()
    flat: dict[str, tuple[str, str]] = {}
    if "base_tree" in body:
        if repo.git.kind(body["base_tree"]) != "tree":
            raise unprocessable("Invalid tree info", "base_tree")
        flat = repo.git.flatten(body["base_tree"])
    for entry in body["tree"]:
        _apply(repo, flat, entry)
    sha = repo.git.tree_from_flat(flat)
    return Reply(201, shapes.tree(call.fake, repo, sha, recursive=False))


def _apply(repo: Repo, flat: dict[str, tuple[str, str]], entry: dict[str, Any]) -> None:
    path = entry.get("path", "")
    if any(part.lower() in _BAD_PARTS for part in path.split("/")):
        raise unprocessable(f"tree.path contains a malformed path component: {path!r}",
                            "tree.path")
    if "sha" in entry and "content" in entry:
        raise unprocessable("Must supply either tree.sha or tree.content, not both", "tree")

    def drop(prefix: str) -> None:
        for known in [p for p in flat if p == prefix or p.startswith(prefix + "/")]:
            del flat[known]

    mode = git_mode(entry.get("mode", "100644"))
    if entry.get("type") and entry["type"] != kind_of_mode(mode):
        raise unprocessable(f"tree.type {entry['type']} does not match mode {entry['mode']}",
                            "tree.type")
    if "content" in entry:
        drop(path)
        flat[path] = (mode, repo.git.blob(entry["content"].encode()))
    elif entry.get("sha") is None:
        drop(path)  # GitHub's documented way to delete a path
    elif kind_of_mode(mode) == "tree":
        if repo.git.kind(entry["sha"]) != "tree":
            raise unprocessable(f"tree.sha {entry['sha']} is not a valid tree", "tree.sha")
        drop(path)
        flat.update({f"{path}/{p}": e for p, e in repo.git.flatten(entry["sha"]).items()})
    else:
        # A submodule names a commit of another repository; anything else must be stored here.
        if kind_of_mode(mode) == "blob" and repo.git.kind(entry["sha"]) != "blob":
            raise unprocessable(f"tree.sha {entry['sha']} is not a valid blob", "tree.sha")
        drop(path)
        flat[path] = (mode, entry["sha"])


@route("git/get-tree")
def get_tree(call: Call) -> Reply:
    repo = call.need_repo()
    sha = call.params["tree_sha"]
    if repo.git.kind(sha) != "tree":
        sha = repo.git.resolve(sha) or ""
        sha = repo.git.read_commit(sha)["tree"] if sha else ""
    if not sha:
        raise not_found()
    recursive = call.query.get("recursive", "") not in ("", "0", "false")
    return Reply(200, shapes.tree(call.fake, repo, sha, recursive))


@route("git/create-commit")
def create_commit(call: Call) -> Reply:
    repo, body, state = call.need_repo(), call.body(), call.fake.state
    if repo.git.kind(body["tree"]) != "tree":
        raise unprocessable("Tree SHA does not exist", "tree")
    for parent in body.get("parents", []):
        if repo.git.kind(parent) != "commit":
            raise unprocessable("Parent SHA does not exist or is not a commit object",
                                "parents")

    def person(given: dict[str, Any] | None, fallback: Person) -> Person:
        if not given:
            return fallback
        when = int(parse_iso(given["date"])) if "date" in given else int(state.now())
        return Person(given.get("name", fallback.name), given.get("email", fallback.email),
                      when)

    author = person(body.get("author"), state.person(call.actor))
    committer = person(body.get("committer"), author)
    sha = repo.git.commit(body["tree"], list(body.get("parents", [])), body["message"],
                          author, committer)
    return Reply(201, shapes.git_commit(call.fake, repo, sha))


@route("git/get-commit")
def get_commit(call: Call) -> Reply:
    repo = call.need_repo()
    if repo.git.kind(call.params["commit_sha"]) != "commit":
        raise not_found()
    return Reply(200, shapes.git_commit(call.fake, repo, call.params["commit_sha"]))


@route("git/get-ref")
def get_ref(call: Call) -> Reply:
    repo = call.need_repo()
    name = "refs/" + call.params["ref"]
    if name not in repo.git.refs:
        raise not_found()
    return Reply(200, shapes.ref(call.fake, repo, name))


@route("git/create-ref")
def create_ref(call: Call) -> Reply:
    repo, body = call.need_repo(), call.body()
    name = body["ref"]
    if not name.startswith("refs/") or name.count("/") < 2:
        raise unprocessable("Reference name must start with 'refs/' and have at least two "
                            "slashes.", "ref")
    if name in repo.git.refs:
        raise unprocessable("Reference already exists", "ref", "already_exists")
    if repo.git.kind(body["sha"]) is None:
        raise unprocessable("Object does not exist", "sha")
    repo.git.set_ref(name, body["sha"])
    call.fake.state.refs_moved(repo)
    return Reply(201, shapes.ref(call.fake, repo, name),
                 {"Location": f"{call.fake.url}/repos/{repo.full_name}/git/{name}"})


@route("git/update-ref")
def update_ref(call: Call) -> Reply:
    repo, body = call.need_repo(), call.body()
    name = "refs/" + call.params["ref"]
    if name not in repo.git.refs:
        raise unprocessable("Reference does not exist", "ref")
    new = body["sha"]
    if repo.git.kind(new) != "commit":
        raise unprocessable("Object does not exist", "sha")
    if not body.get("force") and not _descends(repo, new, repo.git.refs[name]):
        raise unprocessable("Update is not a fast forward", "sha")
    repo.git.set_ref(name, new)
    call.fake.state.refs_moved(repo)
    return Reply(200, shapes.ref(call.fake, repo, name))


def _descends(repo: Repo, sha: str, ancestor: str) -> bool:
    todo, seen = [sha], set()
    while todo:
        current = todo.pop()
        if current == ancestor:
            return True
        if current in seen or repo.git.kind(current) != "commit":
            continue
        seen.add(current)
        todo += repo.git.read_commit(current)["parents"]
    return False


@route("git/delete-ref")
def delete_ref(call: Call) -> Reply:
    repo = call.need_repo()
    name = "refs/" + call.params["ref"]
    if name not in repo.git.refs:
        raise unprocessable("Reference does not exist", "ref")
    repo.git.delete_ref(name)
    return Reply(204)
