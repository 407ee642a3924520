"""Labels, `/agent` commands and check-run buttons, from signed webhook to Run row and reply."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import insert, select

from bot.app import BOT_KEY, Bot, create_app
from bot.commands.grammar import help_text
from bot.commands.replies import FORK_REFUSED, NOT_ALLOWED
from bot.config.settings import Settings
from bot.github import effects
from bot.intake.inbox import InboxOptions
from bot.store.tables import github_effects, run_transitions, runs, utcnow
from tests.conftest import WEBHOOK_SECRET
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub

REPO = f"{p.OWNER}/{p.REPO}"


class Harness:
    """Signed deliveries in, processed by the dispatch worker, state out."""

    def __init__(self, client: TestClient, fake: FakeGitHub) -> None:
        self.client = client
        self.fake = fake

    @property
    def bot(self) -> Bot:
        return self.client.app[BOT_KEY]

    async def deliver(self, event: str, data: dict[str, Any], delivery_id: str | None = None
                      ) -> str:
        delivery_id = delivery_id or str(uuid.uuid4())
        body = p.encode(data)
        response = await self.client.post(
            "/webhook", data=body,
            headers=p.webhook_headers(event, delivery_id, body, WEBHOOK_SECRET))
        assert response.status == 202, await response.text()
        assert self.bot.inbox is not None
        while await self.bot.inbox.drain_once():
            pass
        return delivery_id

    async def runs(self) -> list[Any]:
        assert self.bot.engine is not None
        async with self.bot.engine.connect() as conn:
            return list((await conn.execute(select(runs).order_by(runs.c.id))).all())

    def calls(self, method: str, suffix: str) -> list[Any]:
        return [r for r in self.fake.requests if r.method == method and r.path.endswith(suffix)]

    def comments(self, number: int) -> list[str]:
        """The App's own comments (replies) on an issue or PR."""
        return [c.body for c in self.fake.comments(REPO, number) if c.via_app]

    def comment(self, body: str, *, number: int = p.ISSUE_NUMBER, login: str = "octocat",
                sender_type: str = "User", action: str = "created",
                on_pull_request: bool = False) -> dict[str, Any]:
        """An issue_comment payload for a comment that exists on the fake GitHub."""
        made = self.fake.add_comment(REPO, number, body, user=login, user_type=sender_type)
        return p.issue_comment(body, action=action, login=login, sender_type=sender_type,
                               on_pull_request=on_pull_request, number=number,
                               comment_id=made.id)


@pytest.fixture
async def harness(aiohttp_client: Any, fake_github: FakeGitHub, database_url: str,
                  make_settings: Callable[..., Settings]) -> AsyncIterator[Harness]:
    fake_github.add_installation(p.INSTALLATION_ID, p.OWNER)
    fake_github.add_repo(p.OWNER, p.REPO, repo_id=p.REPO_ID)
    fake_github.add_issue(REPO, p.ISSUE_NUMBER)
    fake_github.add_collaborator(REPO, "octocat", "maintain")
    fake_github.add_collaborator(REPO, "reader", "read")
    settings = make_settings(database_url=database_url, github_api_url=fake_github.url,
                             github_app_id=fake_github.app_id,
                             github_private_key=fake_github.private_key_pem)
    app = create_app(settings, inbox_options=InboxOptions(poll_seconds=3600))
    client = await aiohttp_client(app)
    assert app[BOT_KEY].inbox is not None
    await app[BOT_KEY].inbox.close()  # the tests drain it themselves, deterministically
    fake_github.requests.clear()  # start-up's GET /app; the tests count what deliveries cost
    yield Harness(client, fake_github)


async def test_label_by_a_maintainer_queues_a_run_and_acknowledges(harness: Harness) -> None:
    delivery = await harness.deliver("issues", p.issues_labeled(number=p.ISSUE_NUMBER,
                                                                title="Fix it", body="Please"))
    [run] = await harness.runs()
    assert (run.state, run.trigger, run.sender_login, run.number) == (
        "queued", "label", "octocat", p.ISSUE_NUMBER)
    assert (run.installation_id, run.repo_id, run.repo_full_name) == (
        p.INSTALLATION_ID, p.REPO_ID, REPO)
    assert (run.base_ref, run.is_pull_request, run.delivery_id) == ("main", False, delivery)
    assert (run.title, run.body, run.agent) == ("Fix it", "Please", "claude")
    assert run.clone_url.endswith(f"{REPO}.git")
    # Handling the label writes nothing to GitHub: the status comment, which the reporter
    # posts, is the acknowledgement (no 👀 beside it, one content-creating request less).
    assert [r.operation for r in harness.fake.requests
            if r.method != "GET" and not r.path.startswith("/app/")] == []
    assert len(harness.calls("GET", "/collaborators/octocat/permission")) == 1


async def test_other_labels_cost_only_the_config_lookup(harness: Harness) -> None:
    # The repository may name its own trigger label, so its config is read (a conditional
    # request once cached); nobody's permission is asked and nothing is written.
    await harness.deliver("issues", p.issues_labeled(label="bug"))
    assert await harness.runs() == []
    assert [(r.method, r.operation) for r in harness.fake.requests if "/repos/" in r.path] == [
        ("GET", "GET /repos/{owner}/{repo}/contents/{path}")]


async def test_label_by_a_reader_does_nothing_quietly(harness: Harness) -> None:
    await harness.deliver("issues", p.issues_labeled(login="reader"))
    assert await harness.runs() == []
    assert harness.calls("POST", "/reactions") == [] and harness.calls("POST", "/comments") == []


async def test_comment_command_on_an_issue(harness: Harness) -> None:
    data = harness.comment("/agent --agent codex --timeout 10m add a --verbose flag\nand docs",
                           number=p.ISSUE_NUMBER)
    await harness.deliver("issue_comment", data)
    [run] = await harness.runs()
    assert (run.trigger, run.agent, run.timeout_seconds) == ("comment", "codex", 600)
    assert run.instructions == "add a --verbose flag\nand docs"
    assert run.comment_id == data["comment"]["id"]
    assert harness.fake.reactions("comment", data["comment"]["id"]) == []


async def test_requested_timeout_is_capped_by_the_operator(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent --timeout 5h do it"))
    [run] = await harness.runs()
    assert run.timeout_seconds == harness.bot.settings.run_timeout


async def test_outsider_gets_one_reply_and_no_run_when_only_writers_may_ask(
        harness: Harness) -> None:
    harness.fake.push(REPO, {".github/agentbot.yml": b"approval: writers_only\n"})
    data = harness.comment("/agent do it", login="stranger")
    delivery = await harness.deliver("issue_comment", data)
    await harness.deliver("issue_comment", data, delivery_id=delivery)  # redelivered
    assert await harness.runs() == []
    replies = harness.comments(p.ISSUE_NUMBER)
    assert len(replies) == 1
    assert replies[0].startswith(NOT_ALLOWED.format(login="stranger"))


@pytest.mark.parametrize("action", ["edited", "deleted"])
async def test_edited_and_deleted_comments_never_trigger(harness: Harness, action: str) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent do it", action=action))
    assert await harness.runs() == []
    assert harness.fake.requests == []


CONFIG_LOOKUP = ("GET", "GET /repos/{owner}/{repo}/contents/{path}")


def config_lookups_only(harness: Harness) -> bool:
    calls = [(r.method, r.operation) for r in harness.fake.requests if "/repos/" in r.path]
    return set(calls) == {CONFIG_LOOKUP}


async def test_bots_are_ignored_unless_the_repo_config_allows_them(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment(
        "/agent do it", login="dependabot[bot]", sender_type="Bot"))
    await harness.deliver("issues", p.issues_labeled(login="dependabot[bot]", sender_type="Bot"))
    assert await harness.runs() == []
    # Only the config was read (to see `allowed_bots`): no permission asked, no 👀, no reply.
    assert config_lookups_only(harness)
    harness.fake.push(REPO, {".github/agentbot.yml": b"allowed_bots: [renovate]\n"})
    await harness.deliver("issue_comment", harness.comment(
        "/agent bump it", login="renovate[bot]", sender_type="Bot"))
    [run] = await harness.runs()
    assert (run.sender_login, run.instructions) == ("renovate[bot]", "bump it")
    assert harness.calls("GET", "/collaborators/renovate[bot]/permission") == []


async def test_the_app_itself_never_triggers(harness: Harness) -> None:
    # The bot learnt its own login from GET /app when it started.
    assert harness.bot.github.app_login == "agentbot[bot]"  # type: ignore[union-attr]
    harness.fake.push(REPO, {".github/agentbot.yml": b"allowed_bots: [agentbot]\n"})
    harness.fake.requests.clear()
    await harness.deliver("issue_comment", harness.comment(
        "/agent do it", login="agentbot[bot]", sender_type="Bot"))
    assert await harness.runs() == []
    assert harness.fake.requests == []


async def test_the_repo_config_names_the_trigger_label_and_run_defaults(
        harness: Harness) -> None:
    harness.fake.push(REPO, {".github/agentbot.yml": (
        b"trigger_label: robot\nagent: codex\nmodel: gpt-5\ntimeout: 10m\n"
        b"setup: [make deps]\ndraft: false\n")})
    await harness.deliver("issues", p.issues_labeled(label="agent"))
    assert await harness.runs() == []
    await harness.deliver("issues", p.issues_labeled(label="robot"))
    [run] = await harness.runs()
    assert (run.agent, run.model, run.timeout_seconds) == ("codex", "gpt-5", 600)
    assert run.config["setup"] == ["make deps"] and run.config["draft"] is False
    # A command's options beat the config; its timeout is still capped by the operator.
    harness.fake.add_issue(REPO, 7)
    await harness.deliver("issue_comment", harness.comment(
        "/agent --agent aider --timeout 2h do it", number=7))
    second = (await harness.runs())[1]
    assert (second.agent, second.model) == ("aider", "gpt-5")
    assert second.timeout_seconds == harness.bot.settings.run_timeout


async def test_an_invalid_config_starts_nothing_and_names_line_and_key(
        harness: Harness) -> None:
    harness.fake.push(REPO, {".github/agentbot.yml": b"agent: claude\ntimout: 20m\n"})
    await harness.deliver("issue_comment", harness.comment("/agent do it"))
    assert await harness.runs() == []
    [reply] = harness.comments(p.ISSUE_NUMBER)
    assert "`.github/agentbot.yml`, line 2, key `timout`: unknown key" in reply
    assert "did you mean `timeout`?" in reply
    # The trigger label with a broken config gets the same answer; other labels get none.
    await harness.deliver("issues", p.issues_labeled(label="bug"))
    await harness.deliver("issues", p.issues_labeled(label="agent"))
    assert len(harness.comments(p.ISSUE_NUMBER)) == 2
    assert await harness.runs() == []


async def test_comments_without_a_command_cost_nothing(harness: Harness) -> None:
    body = "Thanks!\n\n```\n/agent not a command in a code block\n```\n> /agent quoted"
    await harness.deliver("issue_comment", harness.comment(body))
    assert harness.fake.requests == []


async def test_help_replies_with_the_generated_usage(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent help",
                                                           number=p.ISSUE_NUMBER))
    [reply] = harness.comments(p.ISSUE_NUMBER)
    assert reply.startswith(help_text("agent"))
    assert await harness.runs() == []


async def test_unknown_verb_gets_usage_and_no_run(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent cancle",
                                                           number=p.ISSUE_NUMBER))
    [reply] = harness.comments(p.ISSUE_NUMBER)
    assert "cancle" in reply and "did you mean" in reply and "/agent cancel" in reply
    assert await harness.runs() == []


async def test_second_trigger_links_the_active_run(harness: Harness) -> None:
    await harness.deliver("issues", p.issues_labeled(number=p.ISSUE_NUMBER))
    await harness.deliver("issue_comment", harness.comment("/agent also this",
                                                           number=p.ISSUE_NUMBER))
    [run] = await harness.runs()
    [reply] = harness.comments(p.ISSUE_NUMBER)
    assert f"run #{run.id} is already queued" in reply


async def test_cancel_a_queued_run_then_retry_it(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent --model o3 do it",
                                                           number=p.ISSUE_NUMBER))
    await harness.deliver("issue_comment", harness.comment("/agent stop",
                                                           number=p.ISSUE_NUMBER))
    [run] = await harness.runs()
    assert run.state == "cancelled" and run.finished_at is not None
    await harness.deliver("issue_comment", harness.comment("/agent retry",
                                                           number=p.ISSUE_NUMBER))
    first, second = await harness.runs()
    assert (second.state, second.trigger, second.retry_of) == ("queued", "retry", first.id)
    assert (second.instructions, second.model) == ("do it", "o3")
    async with harness.bot.engine.connect() as conn:  # type: ignore[union-attr]
        moves = (await conn.execute(
            select(run_transitions.c.from_state, run_transitions.c.to_state)
            .where(run_transitions.c.run_id == first.id).order_by(run_transitions.c.id)
        )).all()
    assert [tuple(m) for m in moves] == [(None, "queued"), ("queued", "cancelled")]


async def test_cancel_with_nothing_active_says_so(harness: Harness) -> None:
    await harness.deliver("issue_comment", harness.comment("/agent cancel",
                                                           number=p.ISSUE_NUMBER))
    [reply] = harness.comments(p.ISSUE_NUMBER)
    assert "no active run" in reply


async def test_status_lists_the_runs(harness: Harness) -> None:
    await harness.deliver("issues", p.issues_labeled(number=p.ISSUE_NUMBER))
    await harness.deliver("issue_comment", harness.comment("/agent status",
                                                           number=p.ISSUE_NUMBER))
    [run] = await harness.runs()
    [reply] = harness.comments(p.ISSUE_NUMBER)
    assert f"| #{run.id} | queued | claude | label | @octocat |" in reply


async def test_pr_comment_works_on_the_head_branch(harness: Harness) -> None:
    pull = harness.fake.add_pull(REPO, head_ref="feature-x")
    await harness.deliver("issue_comment", harness.comment(
        "/agent rename the helper", on_pull_request=True, number=pull.number))
    [run] = await harness.runs()
    assert (run.is_pull_request, run.head_ref, run.base_ref) == (True, "feature-x", "feature-x")
    assert run.base_sha == pull.pull.head_sha
    assert harness.calls("GET", f"/pulls/{pull.number}")


async def test_fork_pr_is_refused_with_a_reply(harness: Harness) -> None:
    pull = harness.fake.add_pull(REPO, head_ref="patch-1", fork=True, user="octocat")
    await harness.deliver("issue_comment", harness.comment(
        "/agent fix the typo", on_pull_request=True, number=pull.number))
    assert await harness.runs() == []
    [reply] = harness.comments(pull.number)
    assert reply.startswith(FORK_REFUSED.split("(")[0].format(login="octocat"))


async def test_review_comment_carries_file_line_and_hunk(harness: Harness) -> None:
    data = p.review_comment("/agent use logging here")
    pull_number = data["pull_request"]["number"]
    harness.fake.add_pull(REPO, pull_number, head_ref=data["pull_request"]["head"]["ref"],
                          head_sha=data["pull_request"]["head"]["sha"])
    made = harness.fake.add_review_comment(REPO, pull_number, data["comment"]["body"])
    data["comment"]["id"] = made.id
    await harness.deliver("pull_request_review_comment", data)
    [run] = await harness.runs()
    assert run.trigger == "review_comment" and run.instructions == "use logging here"
    assert run.context["path"] == data["comment"]["path"]
    assert run.context["diff_hunk"] == data["comment"]["diff_hunk"]
    assert run.context["line"] == (data["comment"]["line"] or data["comment"]["original_line"])
    assert harness.fake.reactions("review_comment", data["comment"]["id"]) == []


async def test_permission_answers_are_cached(harness: Harness) -> None:
    for text in ("/agent status", "/agent help", "/agent status"):
        await harness.deliver("issue_comment", harness.comment(text, number=p.ISSUE_NUMBER))
    assert len(harness.calls("GET", "/collaborators/octocat/permission")) == 1


async def test_reply_lost_in_a_crash_is_found_not_repeated(harness: Harness) -> None:
    delivery = str(uuid.uuid4())
    key = f"reply:{delivery}"
    # The previous attempt recorded the effect, posted the comment, and died.
    harness.fake.add_comment(REPO, p.ISSUE_NUMBER, "help…\n" + effects.marker(key),
                             user="agentbot[bot]", user_type="Bot")
    async with harness.bot.engine.begin() as conn:  # type: ignore[union-attr]
        await conn.execute(insert(github_effects).values(
            key=key, status="pending", created_at=utcnow(), updated_at=utcnow()))
    await harness.deliver("issue_comment", harness.comment("/agent help",
                                                           number=p.ISSUE_NUMBER),
                          delivery_id=delivery)
    assert len(harness.comments(p.ISSUE_NUMBER)) == 1
    assert harness.calls("POST", f"/issues/{p.ISSUE_NUMBER}/comments") == []


async def test_check_run_buttons_cancel_and_retry(harness: Harness) -> None:
    await harness.deliver("issues", p.issues_labeled(number=p.ISSUE_NUMBER))
    [run] = await harness.runs()
    cancel = p.check_run_action("cancel")
    cancel["check_run"]["external_id"] = str(run.id)
    await harness.deliver("check_run", cancel)
    [run] = await harness.runs()
    assert run.state == "cancelled"
    rerun = p.check_run_rerequested()
    rerun["check_run"]["external_id"] = str(run.id)
    await harness.deliver("check_run", rerun)
    first, second = await harness.runs()
    assert (second.state, second.retry_of, second.trigger) == ("queued", first.id, "retry")


async def test_check_run_of_another_app_is_ignored(harness: Harness) -> None:
    data = p.check_run_action("cancel")
    data["check_run"]["external_id"] = ""
    await harness.deliver("check_run", data)
    assert harness.fake.requests == []
