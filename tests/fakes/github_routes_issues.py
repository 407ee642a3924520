"""The fake GitHub's repo, issue, comment, review-comment, reaction and permission endpoints."""

from __future__ import annotations

from tests.fakes import github_shapes as shapes
from tests.fakes.github_http import (
    Call,
    Reply,
    check_length,
    int_param,
    not_found,
    owned,
    paginate,
    route,
)
from tests.fakes.github_state import Comment, Issue, Reaction, ReviewComment, parse_iso

COMMENT_LIMIT = 65536
# GitHub's `permission` field predates custom roles: maintain reads as write, triage as read.
_LEGACY = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read",
           "read": "read", "none": "none"}


@route("repos/get")
def get_repo(call: Call) -> Reply:
    body = shapes.repository(call.fake, call.need_repo(), full=True)
    if call.user is not None:  # a user's token: GitHub adds what they may do
        body["permissions"] = call.fake.repo_permissions(call.user, call.need_repo())
    return Reply(200, body)


@route("repos/get-collaborator-permission-level")
def collaborator_permission(call: Call) -> Reply:
    repo = call.need_repo()
    who = call.fake.state.user(call.params["username"])
    if who.login == repo.owner.login:
        role = "admin"
    else:
        role = repo.collaborators.get(who.login, "none" if repo.private else "read")
    order = ["none", "read", "triage", "write", "maintain", "admin"]
    rank = order.index(role)
    user = shapes.user(call.fake, who)
    user.update(name=None, email=None, role_name=role, permissions={
        "pull": rank >= 1, "triage": rank >= 2, "push": rank >= 3, "maintain": rank >= 4,
        "admin": rank >= 5})
    return Reply(200, {"permission": _LEGACY[role], "role_name": role, "user": user})


def _issue(call: Call) -> Issue:
    repo = call.need_repo()
    found = call.fake.state.issues.get((repo.full_name, int_param(call, "issue_number")))
    if found is None:
        raise not_found()
    return found


def _comment(call: Call) -> Comment:
    return owned(call, call.fake.state.comments, "comment_id")


def _review_comment(call: Call) -> ReviewComment:
    return owned(call, call.fake.state.review_comments, "comment_id")


@route("issues/get")
def get_issue(call: Call) -> Reply:
    return Reply(200, shapes.issue(call.fake, _issue(call)))


@route("issues/list-comments")
def list_comments(call: Call) -> Reply:
    issue = _issue(call)
    since = parse_iso(call.query["since"]) if "since" in call.query else None
    rows = [shapes.comment(call.fake, c) for c in call.fake.state.comments.values()
            if c.repo is issue.repo and c.issue_number == issue.number
            and (since is None or c.updated_at >= since)]
    return paginate(call, rows, f"/repos/{issue.repo.full_name}/issues/{issue.number}/comments")


@route("issues/create-comment")
def create_comment(call: Call) -> Reply:
    issue = _issue(call)
    body = call.body()["body"]
    check_length(body, COMMENT_LIMIT, "issue comment", "IssueComment", "body")
    now = call.fake.state.now()
    created = Comment(call.fake.state.next_id(), issue.repo, issue.number, body, call.actor,
                      now, now, via_app=True)
    call.fake.state.comments[created.id] = created
    return Reply(201, shapes.comment(call.fake, created),
                 {"Location": f"{call.fake.url}/repos/{issue.repo.full_name}/issues/comments/"
                              f"{created.id}"})


@route("issues/get-comment")
def get_comment(call: Call) -> Reply:
    return Reply(200, shapes.comment(call.fake, _comment(call)))


@route("issues/update-comment")
def update_comment(call: Call) -> Reply:
    found = _comment(call)
    body = call.body()["body"]
    check_length(body, COMMENT_LIMIT, "issue comment", "IssueComment", "body")
    found.body = body
    found.updated_at = call.fake.state.now()
    return Reply(200, shapes.comment(call.fake, found))


def _react(call: Call, subject: tuple[str, int]) -> Reply:
    content = call.body()["content"]
    state = call.fake.state
    for existing in state.reactions:
        if existing.subject == subject and existing.user is call.actor \
                and existing.content == content:
            return Reply(200, shapes.reaction(call.fake, existing))  # GitHub: already there
    created = Reaction(state.next_id(), subject, call.actor, content, state.now())
    state.reactions.append(created)
    return Reply(201, shapes.reaction(call.fake, created))


@route("reactions/create-for-issue-comment")
def react_to_comment(call: Call) -> Reply:
    return _react(call, ("comment", _comment(call).id))


@route("reactions/create-for-issue")
def react_to_issue(call: Call) -> Reply:
    return _react(call, ("issue", _issue(call).id))


@route("reactions/create-for-pull-request-review-comment")
def react_to_review_comment(call: Call) -> Reply:
    return _react(call, ("review_comment", _review_comment(call).id))


@route("pulls/get-review-comment")
def get_review_comment(call: Call) -> Reply:
    return Reply(200, shapes.review_comment(call.fake, _review_comment(call)))


@route("pulls/create-reply-for-review-comment")
def reply_to_review_comment(call: Call) -> Reply:
    parent = _review_comment(call)
    if parent.pull_number != int_param(call, "pull_number"):
        raise not_found()
    body = call.body()["body"]
    check_length(body, COMMENT_LIMIT, "review comment reply", "PullRequestReviewComment",
                 "body")
    state = call.fake.state
    created = ReviewComment(
        state.next_id(), parent.repo, parent.pull_number, body, call.actor, parent.path,
        parent.line, parent.diff_hunk, parent.commit_id, state.now(),
        in_reply_to=parent.in_reply_to or parent.id)
    state.review_comments[created.id] = created
    return Reply(201, shapes.review_comment(call.fake, created))
