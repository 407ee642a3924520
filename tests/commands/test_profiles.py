"""`--profile NAME` and the label `agent:NAME` pick a profile of the repository's config."""

from __future__ import annotations

from bot.runs.launch import run_spec
from tests.commands.test_triggers import REPO, Harness, harness
from tests.fakes import payloads as p

__all__ = ["harness"]  # the trigger tests' fixture

CONFIG = b"""\
agent: claude
profiles:
  backend:
    agent: opencode
    model: anthropic/claude-sonnet-4-5
    setup: [make backend]
    system_prompt: docs/agents/backend.md
    timeout: 12m
  docs: {}
"""
SYSTEM_PROMPT = "You serve the backend team."


def configure(harness: Harness) -> None:
    harness.fake.push(REPO, {".github/agentbot.yml": CONFIG,
                             "docs/agents/backend.md": SYSTEM_PROMPT.encode()})


async def test_profile_option_sets_the_run_and_keeps_its_choice(harness: Harness) -> None:
    configure(harness)
    await harness.deliver("issue_comment", harness.comment(
        "/agent run --profile Backend --timeout 5m add an endpoint"))
    [run] = await harness.runs()
    assert (run.agent, run.model, run.timeout_seconds) == (
        "opencode", "anthropic/claude-sonnet-4-5", 300)  # the command's timeout wins
    assert run.config["profile"] == "backend"
    assert run.config["setup"] == ["make backend"]
    assert run.config["system_prompt"] == SYSTEM_PROMPT
    # OpenCode takes no system prompt: it ends the prompt, and the spec carries none.
    spec = run_spec(run, harness.bot.settings, "a" * 40)
    assert spec.system_prompt is None
    assert spec.prompt.endswith(f"(the repository's)\n{SYSTEM_PROMPT}\n")


async def test_a_profile_label_starts_a_run_with_it(harness: Harness) -> None:
    configure(harness)
    await harness.deliver("issues", p.issues_labeled(label="agent:docs"))
    [run] = await harness.runs()
    assert (run.trigger, run.agent, run.config["profile"]) == ("label", "claude", "docs")
    spec = run_spec(run, harness.bot.settings, "a" * 40)
    assert spec.system_prompt is None and "Standing instructions" not in spec.prompt


async def test_an_unknown_profile_is_answered_with_the_ones_there_are(harness: Harness) -> None:
    configure(harness)
    await harness.deliver("issue_comment", harness.comment("/agent --profile frontend do it"))
    await harness.deliver("issues", p.issues_labeled(label="agent:nope"))
    assert await harness.runs() == []
    assert [reply.split("\n")[0] for reply in harness.comments(p.ISSUE_NUMBER)] == [
        f"@octocat agentbot did not start a run: there is no profile `{name}` in "
        "`.github/agentbot.yml`; its profiles are `backend`, `docs`." for name in
        ("frontend", "nope")]


async def test_a_label_of_no_profile_shape_is_not_a_trigger(harness: Harness) -> None:
    configure(harness)
    await harness.deliver("issues", p.issues_labeled(label="agent:"))
    await harness.deliver("issues", p.issues_labeled(label="agent: two words"))
    assert await harness.runs() == [] and harness.comments(p.ISSUE_NUMBER) == []


async def test_a_retry_keeps_the_profile_as_the_file_says_it_now(harness: Harness) -> None:
    configure(harness)
    await harness.deliver("issue_comment", harness.comment("/agent --profile backend go"))
    await harness.deliver("issue_comment", harness.comment("/agent stop"))
    harness.fake.push(REPO, {"docs/agents/backend.md": b"You serve the API team.\n"})
    await harness.deliver("issue_comment", harness.comment("/agent retry"))
    first, second = await harness.runs()
    assert (second.retry_of, second.agent, second.config["profile"]) == (
        first.id, "opencode", "backend")
    assert second.config["system_prompt"] == "You serve the API team."

    # A profile gone from the file: the retry is refused, naming the ones there are.
    harness.fake.push(REPO, {".github/agentbot.yml": b"profiles:\n  docs: {}\n"})
    await harness.deliver("issue_comment", harness.comment("/agent stop"))
    await harness.deliver("issue_comment", harness.comment("/agent retry"))
    assert len(await harness.runs()) == 2
    assert harness.comments(p.ISSUE_NUMBER)[-1].split("\n")[0] == (
        "@octocat agentbot did not start a run: there is no profile `backend` in "
        "`.github/agentbot.yml`; its profiles are `docs`.")
