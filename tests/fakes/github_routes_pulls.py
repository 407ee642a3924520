"""The fake GitHub's pull request and check run endpoints."""

from __future__ import annotations

from typing import Any

from tests.fakes import github_shapes as shapes
from tests.fakes import github_shapes_git as git_shapes
from tests.fakes.github_http import (
    ApiError,
    Call,
    Reply,
    check_length,
    int_param,
    not_found,
    owned,
    paginate,
    route,
    unprocessable,
)
from tests.fakes.github_state import CheckRun, Issue, Pull, parse_iso

BODY_LIMIT = 65536
OUTPUT_LIMIT = 65535


def _pull(call: Call) -> Issue:
    repo = call.need_repo()
    found = call.fake.state.issues.get((repo.full_name, int_param(call, "pull_number")))
    if found is None or found.pull is None:
        raise not_found()
    return found


@route("pulls/get")
def get_pull(call: Call) -> Reply:
    return Reply(200, git_shapes.pull_request(call.fake, _pull(call)))


@route("pulls/list")
def list_pulls(call: Call) -> Reply:
    repo, query = call.need_repo(), call.query
    rows = []
    for issue in sorted(call.fake.state.pulls(repo), key=lambda i: -i.number):
        pull = issue.pull
        assert pull is not None
        if query.get("state", "open") not in ("all", issue.state):
            continue
        if "head" in query:
            owner, _, branch = query["head"].partition(":")
            if (pull.head_repo.owner.login, pull.head_ref) != (owner, branch):
                continue
        if "base" in query and pull.base_ref != query["base"]:
            continue
        rows.append(git_shapes.pull_request(call.fake, issue, simple=True))
    return paginate(call, rows, f"/repos/{repo.full_name}/pulls")


@route("pulls/create")
def create_pull(call: Call) -> Reply:
    repo, body, state = call.need_repo(), call.body(), call.fake.state
    owner, _, branch = body["head"].rpartition(":")
    head_repo = repo if owner in ("", repo.owner.login) else None
    if head_repo is None or f"refs/heads/{branch}" not in repo.git.refs:
        raise unprocessable("Validation Failed", "head", resource="PullRequest")
    if f"refs/heads/{body['base']}" not in repo.git.refs:
        raise unprocessable("Validation Failed", "base", resource="PullRequest")
    if "title" not in body:
        raise unprocessable("Validation Failed", "title", "missing_field", "PullRequest")
    check_length(body.get("body"), BODY_LIMIT, "pull request", "PullRequest", "body")
    for issue in state.pulls(repo):
        pull = issue.pull
        if pull and issue.state == "open" and (pull.head_ref, pull.base_ref) == \
                (branch, body["base"]) and pull.head_repo is repo:
            raise ApiError(422, "Validation Failed", [{
                "resource": "PullRequest", "code": "custom",
                "message": f"A pull request already exists for {repo.owner.login}:{branch}."}])
    head_sha = repo.git.refs[f"refs/heads/{branch}"]
    if head_sha == repo.git.refs[f"refs/heads/{body['base']}"]:
        raise ApiError(422, "Validation Failed", [{
            "resource": "PullRequest", "code": "custom",
            "message": f"No commits between {body['base']} and {branch}"}])
    pull = Pull(branch, head_sha, body["base"], repo, id=state.next_id(),
                draft=bool(body.get("draft")))
    issue = state.add_issue_row(repo, None, body["title"], body.get("body"), call.actor, [],
                                pull)
    repo.git.set_ref(f"refs/pull/{issue.number}/head", head_sha)
    return Reply(201, git_shapes.pull_request(call.fake, issue))


@route("pulls/update")
def update_pull(call: Call) -> Reply:
    issue, body = _pull(call), call.body()
    assert issue.pull is not None
    check_length(body.get("body"), BODY_LIMIT, "pull request", "PullRequest", "body")
    if "base" in body:
        if f"refs/heads/{body['base']}" not in issue.repo.git.refs:
            raise unprocessable("Validation Failed", "base", resource="PullRequest")
        issue.pull.base_ref = body["base"]
    for name in ("title", "body", "state"):
        if name in body:
            setattr(issue, name, body[name])
    issue.updated_at = call.fake.state.now()
    return Reply(200, git_shapes.pull_request(call.fake, issue))


@route("pulls/request-reviewers")
def request_reviewers(call: Call) -> Reply:
    issue = _pull(call)
    assert issue.pull is not None
    for login in call.body().get("reviewers", []):
        if login == issue.user.login:
            raise unprocessable("Review cannot be requested from pull request author.")
        if login not in issue.repo.collaborators and login != issue.repo.owner.login:
            raise unprocessable(
                "Reviews may only be requested from collaborators. One or more of the users or "
                f"teams you specified is not a collaborator of the {issue.repo.full_name} "
                "repository.")
        reviewer = call.fake.state.user(login)
        if reviewer not in issue.pull.requested_reviewers:
            issue.pull.requested_reviewers.append(reviewer)
    return Reply(201, git_shapes.pull_request(call.fake, issue, simple=True))


def _check_output(body: dict[str, Any]) -> None:
    output = body.get("output") or {}
    for name in ("summary", "text"):
        check_length(output.get(name), OUTPUT_LIMIT, "check run output", "CheckRun",
                     f"output.{name}")


def _timestamps(run: CheckRun, body: dict[str, Any], now: float) -> None:
    if "started_at" in body:
        run.started_at = parse_iso(body["started_at"])
    if "completed_at" in body:
        run.completed_at = parse_iso(body["completed_at"])
    if "conclusion" in body:
        # Setting a conclusion completes the run, as on GitHub.
        run.conclusion, run.status = body["conclusion"], "completed"
    elif "status" in body:
        run.status = body["status"]
    if run.status == "completed" and run.conclusion is None:
        raise unprocessable("Validation Failed", "conclusion", "missing_field", "CheckRun")
    if run.status == "completed" and run.completed_at is None:
        run.completed_at = now


def _apply(run: CheckRun, body: dict[str, Any]) -> None:
    for name in ("name", "details_url", "external_id"):
        if name in body:
            setattr(run, name, body[name])
    if "output" in body:
        output = dict(body["output"])
        output["annotations"] = len(output.get("annotations", []))
        run.output = output
    if "actions" in body:
        run.actions = list(body["actions"])


@route("checks/create")
def create_check_run(call: Call) -> Reply:
    repo, body, state = call.need_repo(), call.body(), call.fake.state
    if repo.git.kind(body["head_sha"]) != "commit":
        raise unprocessable(f"No commit found for SHA: {body['head_sha']}", "head_sha")
    _check_output(body)
    suite = state.suite_ids.setdefault((repo.full_name, body["head_sha"]), state.next_id())
    now = state.now()
    run = CheckRun(state.next_id(), repo, body["head_sha"], body["name"], "queued", None,
                   now, None, None, None, {}, [], suite)
    _timestamps(run, body, now)
    _apply(run, body)
    state.check_runs[run.id] = run
    return Reply(201, shapes.check_run(call.fake, run))


def _check_run(call: Call) -> CheckRun:
    return owned(call, call.fake.state.check_runs, "check_run_id")


@route("checks/get")
def get_check_run(call: Call) -> Reply:
    return Reply(200, shapes.check_run(call.fake, _check_run(call)))


@route("checks/update")
def update_check_run(call: Call) -> Reply:
    run, body = _check_run(call), call.body()
    _check_output(body)
    _timestamps(run, body, call.fake.state.now())
    _apply(run, body)
    return Reply(200, shapes.check_run(call.fake, run))


@route("checks/list-for-ref")
def list_check_runs(call: Call) -> Reply:
    repo, query = call.need_repo(), call.query
    sha = repo.git.resolve(call.params["ref"])
    if sha is None:
        raise unprocessable(f"No commit found for SHA: {call.params['ref']}", "ref")
    runs = [r for r in call.fake.state.check_runs.values() if r.repo is repo and r.head_sha == sha]
    if "check_name" in query:
        runs = [r for r in runs if r.name == query["check_name"]]
    if "status" in query:
        runs = [r for r in runs if r.status == query["status"]]
    if "app_id" in query and int(query["app_id"]) != call.fake.app_id:
        runs = []
    runs.sort(key=lambda r: -r.id)
    if query.get("filter", "latest") == "latest":
        latest: dict[str, CheckRun] = {}
        for run in runs:
            latest.setdefault(run.name, run)
        runs = list(latest.values())
    rows = [shapes.check_run(call.fake, r) for r in runs]
    return paginate(call, rows, f"/repos/{repo.full_name}/commits/{call.params['ref']}/check-runs",
                    wrap=lambda page: {"total_count": len(rows), "check_runs": page})
