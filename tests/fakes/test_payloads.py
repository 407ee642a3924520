"""Every webhook payload the suite uses validates against GitHub's webhook schemas."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.fakes import payloads
from tests.fakes.openapi_check import SCHEMAS

HELPERS = {
    "issue_comment on an issue": ("issue_comment.created", lambda: payloads.issue_comment()),
    "issue_comment on a PR": (
        "issue_comment.created",
        lambda: payloads.issue_comment("/agent retry", on_pull_request=True, number=7,
                                       comment_id=99, login="alice")),
    "issue_comment edited on a PR": (
        "issue_comment.edited",
        lambda: payloads.issue_comment(action="edited", on_pull_request=True)),
    "issue_comment deleted": ("issue_comment.deleted",
                              lambda: payloads.issue_comment(action="deleted")),
    "issue_comment by the App": (
        "issue_comment.created",
        lambda: payloads.issue_comment("status", login="agentbot[bot]", sender_type="Bot")),
    "issue_comment by another bot": (
        "issue_comment.created",
        lambda: payloads.issue_comment("/agent go", login="dependabot[bot]", sender_type="Bot")),
    "issues.labeled": ("issues.labeled",
                       lambda: payloads.issues_labeled("ai", number=5, title="T", body="B")),
    "issues.opened": ("issues.opened", lambda: payloads.issues_opened(login="bob")),
    "review comment": (
        "pull_request_review_comment.created",
        lambda: payloads.review_comment(pull_number=9, head_ref="topic", head_sha="a" * 40,
                                        base_ref="develop", line=None)),
    "review comment on a fork PR": (
        "pull_request_review_comment.created",
        lambda: payloads.review_comment(fork=True, login="mallory")),
    "check_run requested_action": (
        "check_run.requested_action",
        lambda: payloads.check_run_action("cancel", id=5, external_id="run-5")),
    "check_run rerequested": ("check_run.rerequested",
                              lambda: payloads.check_run_rerequested(login="alice")),
    "installation created": ("installation.created",
                             lambda: payloads.installation_event("created", installation_id=9)),
    "installation deleted": ("installation.deleted",
                             lambda: payloads.installation_event("deleted", account="acme")),
    "ping": ("ping", payloads.ping),
    "elsewhere": ("issues.labeled",
                  lambda: payloads.issues_labeled(owner="acme", repo="rocket", repo_id=77,
                                                  installation_id=8)),
}


@cache
def _validator(key: str) -> Draft202012Validator:
    document = json.loads((SCHEMAS / "webhooks.json").read_text())
    return Draft202012Validator({"allOf": [document["webhooks"][key]],
                                 "components": document["components"]})


def _problems(key: str, data: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in _validator(key).iter_errors(data)]


def test_every_listed_webhook_has_a_fixture() -> None:
    document = json.loads((SCHEMAS / "webhooks.json").read_text())
    covered = {payloads.schema_key(name) for name in payloads.fixture_names()}
    assert covered == set(document["webhooks"])


@pytest.mark.parametrize("name", payloads.fixture_names())
def test_fixture_validates(name: str) -> None:
    data = json.loads((payloads.PAYLOADS / f"{name}.json").read_text())
    assert _problems(payloads.schema_key(name), data) == []


@pytest.mark.parametrize("case", sorted(HELPERS))
def test_helper_output_validates(case: str) -> None:
    key, build = HELPERS[case]
    assert _problems(key, build()) == []


def test_validation_catches_a_broken_payload() -> None:
    data = payloads.issue_comment()
    data["comment"]["user"]["type"] = "Robot"
    del data["sender"]
    problems = _problems("issue_comment.created", data)
    assert any("sender" in p for p in problems)
    assert any("Robot" in p for p in problems)


def test_helpers_apply_their_arguments() -> None:
    data = payloads.issue_comment("/agent cancel", on_pull_request=True, number=7,
                                  comment_id=99, login="alice", owner="acme", repo="rocket",
                                  repo_id=77, installation_id=8)
    assert data["comment"]["body"] == "/agent cancel"
    assert data["comment"]["user"]["login"] == data["sender"]["login"] == "alice"
    assert data["issue"]["number"] == 7 and "pull_request" in data["issue"]
    assert data["issue"]["pull_request"]["url"].endswith("/repos/acme/rocket/pulls/7")
    assert data["comment"]["html_url"].endswith("/acme/rocket/pull/7#issuecomment-99")
    assert data["repository"]["full_name"] == "acme/rocket" and data["repository"]["id"] == 77
    assert data["installation"]["id"] == 8
    on_issue = payloads.issue_comment()
    assert "pull_request" not in on_issue["issue"]
    assert on_issue["issue"]["number"] == payloads.ISSUE_NUMBER


def test_bot_senders_look_like_bots() -> None:
    own = payloads.issue_comment(login="agentbot[bot]", sender_type="Bot")
    assert own["sender"]["type"] == "Bot"
    assert own["comment"]["performed_via_github_app"]["id"] == payloads.APP_ID
    other = payloads.issue_comment(login="renovate[bot]", sender_type="Bot")
    assert other["comment"]["performed_via_github_app"] is None


def test_each_call_returns_a_fresh_copy() -> None:
    first = payloads.issues_labeled()
    first["issue"]["title"] = "changed"
    assert payloads.issues_labeled()["issue"]["title"] != "changed"


def test_review_comment_on_a_fork() -> None:
    data = payloads.review_comment(fork=True, login="mallory", head_sha="b" * 40)
    head, base = data["pull_request"]["head"], data["pull_request"]["base"]
    assert head["repo"]["fork"] is True and head["repo"]["full_name"] == "mallory/hello-world"
    assert head["repo"]["id"] != base["repo"]["id"]
    assert data["comment"]["commit_id"] == "b" * 40


def test_check_run_fields_override() -> None:
    data = payloads.check_run_action("cancel", id=5, head_sha="c" * 40, external_id="run-5")
    assert data["requested_action"] == {"identifier": "cancel"}
    assert data["check_run"]["id"] == 5 and data["check_run"]["head_sha"] == "c" * 40
    assert data["check_run"]["app"]["id"] == payloads.APP_ID


def test_sign_matches_githubs_documented_vector() -> None:
    signature = payloads.sign(b"Hello, World!", "It's a Secret to Everybody")
    assert signature == ("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b04"
                         "3e17")


def test_webhook_headers() -> None:
    body = payloads.encode(payloads.ping())
    headers = payloads.webhook_headers("ping", "72d3162e-cc78-11e3-81ab-4c9367dc0958", body, "s")
    assert headers["X-GitHub-Event"] == "ping"
    assert headers["X-GitHub-Delivery"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert headers["X-Hub-Signature-256"] == payloads.sign(body, "s")
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == payloads.ping()
