"""The check run and the status comment link the run's page only when sign-in is on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from types import SimpleNamespace

from bot.config.settings import Settings
from bot.report.text import Progress, check_run_body, comment_body
from bot.web.routes import run_page_url

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def a_run(**values: object) -> SimpleNamespace:
    fields: dict[str, object] = dict(
        id=12, state="running", repo_full_name="octo-org/widgets", number=3, agent="claude",
        model=None, trigger="label", sender_login="octocat", created_at=NOW, started_at=NOW,
        finished_at=None, result=None, config=None, pr_number=None, pr_url=None,
        is_pull_request=False, branch=None, head_ref=None, commit_sha=None, error=None,
        timeout_seconds=600, budget_reached=None, summary=None)
    fields.update(values)
    return SimpleNamespace(**fields)


def test_the_page_is_linked_with_sign_in_and_a_public_url(
        make_settings: Callable[..., Settings]) -> None:
    url = run_page_url(make_settings(github_client_id="Iv1.x", github_client_secret="s",
                                     public_url="https://agentbot.example.com/"))
    assert url(12) == "https://agentbot.example.com/runs/12"
    body = check_run_body(a_run(), Progress(), NOW, url(12))
    assert body["details_url"] == "https://agentbot.example.com/runs/12"
    comment = comment_body(a_run(), "https://github.com/c/1", NOW, None, url(12))
    assert "[Check run](https://github.com/c/1) · " \
           "[Run page](https://agentbot.example.com/runs/12)" in comment


def test_nothing_is_linked_while_sign_in_is_off(make_settings: Callable[..., Settings]) -> None:
    for settings in (make_settings(public_url="https://agentbot.example.com"),
                     make_settings(github_client_id="Iv1.x", github_client_secret="s")):
        url = run_page_url(settings)
        assert url(12) is None
        assert "details_url" not in check_run_body(a_run(), Progress(), NOW, url(12))
        assert "Run page" not in comment_body(a_run(), None, NOW, None, url(12))


def test_half_an_oauth_client_is_a_start_up_problem_naming_the_missing_half(
        make_settings: Callable[..., Settings]) -> None:
    only_id = make_settings(github_client_id="Iv1.x")
    assert not only_id.sign_in
    assert any(p.startswith("GITHUB_CLIENT_SECRET is not set") for p in only_id.app_problems())
    only_secret = make_settings(github_client_secret="client-secret-value-42")
    assert any(p.startswith("GITHUB_CLIENT_ID is not set")
               for p in only_secret.app_problems())
    assert "client-secret-value-42" not in " ".join(only_secret.app_problems())
    both = make_settings(github_client_id="Iv1.x", github_client_secret="s")
    assert both.sign_in and not [p for p in both.app_problems() if "CLIENT" in p]
