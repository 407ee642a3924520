"""The `/agent` grammar: verbs, options, Markdown blocks that hide commands, and the registry."""

from __future__ import annotations

import pytest

from bot.commands import grammar
from bot.commands.grammar import (
    COMMANDS,
    OPTIONS,
    Command,
    CommandError,
    commands_table_markdown,
    help_text,
    parse_commands,
    usage_text,
)
from bot.config.budget import Budget
from bot.config.settings import AGENTS


def one(body: str) -> Command | CommandError:
    (result,) = parse_commands(body)
    return result


def error(body: str) -> str:
    result = one(body)
    assert isinstance(result, CommandError), result
    return result.message


# verbs and aliases


@pytest.mark.parametrize(
    ("body", "verb"),
    [
        ("/agent run fix it", "run"),
        ("/agent cancel", "cancel"),
        ("/agent stop", "cancel"),
        ("/agent retry", "retry"),
        ("/agent status", "status"),
        ("/agent help", "help"),
        ("/agent HELP", "help"),
        ("/agent Status?", "status"),
        ("/agent Stop.", "cancel"),
        ("/agent fix the flaky test", "run"),
    ],
)
def test_verbs_and_aliases(body: str, verb: str) -> None:
    result = one(body)
    assert isinstance(result, Command)
    assert result.verb == verb
    assert result.line == 1


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("/agent fix the flaky test", "fix the flaky test"),
        ("/agent run fix the flaky test", "fix the flaky test"),
        ("/agent run: fix the flaky test", "fix the flaky test"),
        ("/agent   lots   of   space  ", "lots   of   space"),
        ("/agent", ""),
        ("/agent run", ""),
        ("/agent\tfix tabs", "fix tabs"),
        ("/agent implement", "implement"),  # a lone word far from every verb is instructions
        ("/agent start", "start"),
    ],
)
def test_run_text(body: str, text: str) -> None:
    assert one(body) == Command(verb="run", text=text, line=1)


@pytest.mark.parametrize("verb", ["cancel", "stop", "retry", "status", "help"])
def test_verbs_without_input_refuse_text(verb: str) -> None:
    message = error(f"/agent {verb} the old run please")
    assert message == (
        f"`/agent {verb}` takes no instructions; for instructions that begin with `{verb}`, "
        f"write `/agent run {verb} the old run please`"
    )


@pytest.mark.parametrize("verb", ["cancel", "stop", "retry", "status", "help"])
def test_verbs_without_input_refuse_options(verb: str) -> None:
    assert error(f"/agent {verb} --agent codex") == f"`/agent {verb}` takes no options"


def test_lines_after_a_verb_without_input_are_ordinary_text() -> None:
    assert parse_commands("/agent cancel\nthanks, that was the wrong issue") == [
        Command(verb="cancel", line=1)
    ]


# misspelt verbs


@pytest.mark.parametrize(
    ("word", "suggestion"),
    [("cancle", "cancel"), ("retyr", "retry"), ("stauts", "status"), ("hlep", "help"),
     ("stpo", "stop"), ("Cancle!", "cancel")],
)
def test_misspelt_lone_verb_suggests_the_verb(word: str, suggestion: str) -> None:
    assert error(f"/agent {word}") == (
        f"unknown command `{word}`; did you mean `/agent {suggestion}`?"
    )


def test_misspelt_verb_followed_by_text_is_instructions() -> None:
    assert one("/agent cancle the order flow") == Command(verb="run",
                                                          text="cancle the order flow")


# options


@pytest.mark.parametrize(
    "body",
    [
        "/agent run --agent codex --model gpt-5-codex --timeout 20m fix it",
        "/agent run --agent=codex --model=gpt-5-codex --timeout=20m fix it",
        "/agent --agent codex --model=gpt-5-codex --timeout 20m fix it",
        "/agent run --timeout 20m --model gpt-5-codex --agent CODEX fix it",
    ],
)
def test_options_in_both_forms(body: str) -> None:
    assert one(body) == Command(verb="run", text="fix it", agent="codex", model="gpt-5-codex",
                                timeout=1200)


@pytest.mark.parametrize(
    ("value", "seconds"), [("90", 90), ("90s", 90), ("20m", 1200), ("1h", 3600),
                           ("1h30m", 5400)],
)
def test_timeout_durations(value: str, seconds: int) -> None:
    result = one(f"/agent --timeout {value} go")
    assert isinstance(result, Command) and result.timeout == seconds


@pytest.mark.parametrize(
    ("value", "budget"), [("$3", Budget(dollars=3.0)), ("$0.50", Budget(dollars=0.5)),
                          ("500k", Budget(tokens=500_000)), ("2M", Budget(tokens=2_000_000)),
                          ("1.5m", Budget(tokens=1_500_000)), ("120000", Budget(tokens=120_000)),
                          ("$3,2M", Budget(dollars=3.0, tokens=2_000_000)),
                          ("3usd", Budget(dollars=3.0))],
)
def test_budgets(value: str, budget: Budget) -> None:
    result = one(f"/agent --budget {value} go")
    assert isinstance(result, Command) and result.budget == budget and result.text == "go"


@pytest.mark.parametrize(("value", "message"), [
    ("lots", "`--budget`: `lots` is not a budget; write dollars like `$3`"),
    ("$0", "`--budget`: a budget must be more than zero"),
    ("0k", "`--budget`: a budget must be more than zero"),
    ("$3,$4", "`--budget`: the budget names dollars twice"),
    ("$3,", "`--budget`: `$3,` is not a budget"),
    ("$1e9", "`--budget`: `$1e9` is not a budget"),
    ("$9999999", "`--budget`: `$9999999` is more than the largest budget agentbot takes"),
])
def test_budgets_that_are_not(value: str, message: str) -> None:
    result = one(f"/agent --budget {value} go")
    assert isinstance(result, CommandError) and result.message.startswith(message)


@pytest.mark.parametrize("agent", AGENTS)
def test_every_known_agent(agent: str) -> None:
    result = one(f"/agent --agent {agent} go")
    assert isinstance(result, Command) and result.agent == agent


@pytest.mark.parametrize(
    "model", ["claude-sonnet-4-5", "o3", "openrouter/anthropic/claude-3.5", "qwen2.5:32b"]
)
def test_model_names(model: str) -> None:
    result = one(f"/agent --model {model} go")
    assert isinstance(result, Command) and result.model == model


def test_option_after_the_first_word_of_text_is_text() -> None:
    assert one("/agent fix --agent flag parsing") == Command(
        verb="run", text="fix --agent flag parsing"
    )


def test_double_dash_ends_options() -> None:
    assert one("/agent run --model o3 -- --verbose should be the default") == Command(
        verb="run", text="--verbose should be the default", model="o3"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("/agent run --agnet codex go", "unknown option `--agnet`; did you mean `--agent`?"),
        ("/agent --modle o3 go", "unknown option `--modle`; did you mean `--model`?"),
        ("/agent --verbose go", "unknown option `--verbose`"),
        ("/agent run --agent", "option `--agent` needs a value (NAME)"),
        ("/agent run --agent --model o3 go", "option `--agent` needs a value (NAME)"),
        ("/agent run --model= go", "option `--model` needs a value (NAME)"),
        ("/agent run --timeout", "option `--timeout` needs a value (DURATION)"),
        ("/agent run --timeout soon go",
         "`soon` is not a duration for `--timeout`; write it like `20m` or `1h30m`"),
        ("/agent run --timeout 0 go", "`0` is not a duration for `--timeout`; write it like "
                                      "`20m` or `1h30m`"),
        ("/agent run --agent gpt go",
         "unknown agent `gpt`; the agents are `claude`, `codex`, `opencode`, `aider`, `command`"),
        ("/agent run --agent claud go",
         "unknown agent `claud`; the agents are `claude`, `codex`, `opencode`, `aider`, "
         "`command`; did you mean `claude`?"),
        ("/agent run --model 'o3;rm' go", "`'o3;rm'` is not a model name"),
        ("/agent --agent codex --agent claude go", "option `--agent` is given more than once"),
    ],
)
def test_option_errors(body: str, message: str) -> None:
    assert error(body) == message


def test_user_words_in_messages_cannot_break_out_of_code() -> None:
    message = error("/agent --agent `@org/team`")
    assert "`` `@org/team` ``" in message
    long_word = "x" * 200
    assert len(error(f"/agent --model {long_word}!")) < 80


# where a command may stand


@pytest.mark.parametrize(
    "body",
    [
        "please /agent run this",
        "/agents run this",
        "/agent-foo run this",
        "/AGENT run this",
        "    /agent run this",
        "\t/agent run this",
        "- /agent run this",
        "`/agent run this`",
        "> /agent run this",
        ">/agent run this",
        "   > /agent run this",
        "<!-- /agent run this -->",
        "<!--\n/agent run this\n-->",
        "<!--\nhidden\n/agent run this\n/agent status\n-->",
        "```\n    ```\n/agent run this",  # indented 4: content, not the closing fence
        "text <!-- hidden\n/agent run this\nstill hidden -->",
        "```\n/agent run this\n```",
        "~~~\n/agent run this\n~~~",
        "```python\n/agent run this\n```",
        "````\n```\n/agent run this\n```\n````",
        "~~~~\n~~~\n/agent run this\n~~~~",
        "```\n/agent run this\n~~~\nstill code",
        "```\n/agent run this",  # an unclosed fence runs to the end
        "text\n\n    /agent run this",
        "\n    code\n\n    /agent run this",
        "- item\n\n  ```\n  /agent run this\n  ```",
        "",
        None,
    ],
)
def test_no_command(body: str | None) -> None:
    assert parse_commands(body) == []


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("/agent status", 1),
        (" /agent status", 1),
        ("   /agent status", 1),
        ("hello\n/agent status", 2),
        ("hello\r\n\r\n/agent status\r\n", 3),
        ("old mac\r/agent status", 2),
        ("\ufeff/agent status", 1),
        ("```\ncode\n```\n/agent status", 4),
        ("````\n```\n````\n/agent status", 4),
        ("```` x\n```\n/agent no\n```\n````\n/agent status", 6),
        ("~~~\n```\n~~~\n/agent status", 4),
        ("> quoted\n\n/agent status", 3),
        ("<!-- a comment -->\n/agent status", 2),
        ("<!--\nmulti\nline\n-->\n/agent status", 5),
        ("/agent status <!-- why -->", 1),
        ("use `<!--` for comments\n/agent status", 2),
        ("```\n/agent no\n   ```\n/agent status", 4),
        ("    code\n\n/agent status", 3),
        ("text\n\n    <!-- literal in indented code\n\n/agent status", 5),
        ("- item\n\n  ```\n      ```\n  ```\n/agent status", 6),
        ("``` info `with` ticks\n/agent status", 2),  # not a fence: ticks in its info string
    ],
)
def test_command_positions(body: str, line: int) -> None:
    assert parse_commands(body) == [Command(verb="status", line=line)]


def test_closing_fence_must_be_at_least_as_long() -> None:
    body = "`````\n```\n/agent status\n````\n/agent run no\n`````\n/agent help"
    assert parse_commands(body) == [Command(verb="help", line=7)]


# instructions over several lines


def test_multi_line_instructions_keep_code_blocks_verbatim() -> None:
    body = (
        "Thanks for the report.\n"
        "/agent run --agent aider fix the crash\n"
        "It happens here:\n"
        "\n"
        "```python\n"
        "def f():\n"
        "    return 1 / 0\n"
        "/agent run this is code, not a command\n"
        "```\n"
        "\n"
        "    indented   stays\n"
        "> the traceback\n"
        "<!-- hidden note -->\n"
        "Keep it small.   \n"
        "\n"
    )
    assert one(body) == Command(
        verb="run",
        agent="aider",
        line=2,
        text=(
            "fix the crash\n"
            "It happens here:\n"
            "\n"
            "```python\n"
            "def f():\n"
            "    return 1 / 0\n"
            "/agent run this is code, not a command\n"
            "```\n"
            "\n"
            "    indented   stays\n"
            "> the traceback\n"
            "Keep it small."
        ),
    )


def test_instructions_only_below_the_command() -> None:
    assert one("/agent\n\nAdd a --json flag.\nDocument it.") == Command(
        verb="run", text="Add a --json flag.\nDocument it."
    )


def test_instructions_starting_with_indented_code_keep_their_indent() -> None:
    assert one("/agent run\n\n    x = 1\n") == Command(verb="run", text="    x = 1")


def test_crlf_instructions() -> None:
    assert one("/agent fix\r\nline two\r\n") == Command(verb="run", text="fix\nline two")


def test_several_commands_in_one_comment() -> None:
    body = (
        "/agent status\n"
        "/agent run --model o3 first\n"
        "more of first\n"
        "/agent cancle\n"
        "/agent run second\n"
        "```\n/agent help\n```\n"
        "/agent stop"
    )
    assert parse_commands(body) == [
        Command(verb="status", line=1),
        Command(verb="run", text="first\nmore of first", model="o3", line=2),
        CommandError("unknown command `cancle`; did you mean `/agent cancel`?", line=4),
        Command(verb="run", text="second\n```\n/agent help\n```", line=5),
        Command(verb="cancel", line=9),
    ]


def test_inline_comment_is_not_part_of_instructions() -> None:
    assert one("/agent fix it <!-- not this -->\nand <!-- nor this --> that") == Command(
        verb="run", text="fix it\nand  that"
    )


# the registry and the text generated from it


def test_registry_names() -> None:
    assert [info.name for info in COMMANDS] == ["run", "cancel", "retry", "status", "pick",
                                               "help", "approve", "deny"]
    assert [info.aliases for info in COMMANDS] == [(), ("stop",), (), (), (), (), (), ()]
    assert [option.name for option in OPTIONS] == ["agent", "model", "profile", "fresh",
                                                   "timeout", "budget", "variants"]
    assert [info.name for info in COMMANDS if info.takes_input] == ["run"]


def test_help_lists_every_command_option_and_the_label() -> None:
    text = help_text("ai-help")
    for info in COMMANDS:
        assert f"`{info.usage}`" in text and info.summary in text
        for alias in info.aliases:
            assert f"`/agent {alias}`" in text
    for option in OPTIONS:
        assert f"`{option.usage}`" in text and option.summary in text
    assert "`ai-help` label" in text
    assert text.startswith(grammar.HELP_TITLE)


def test_usage_lists_every_verb_and_alias() -> None:
    text = usage_text("agent")
    for word in ["run", "cancel", "stop", "retry", "status", "help"]:
        assert f"\n/agent {word}" in text or f"\n/agent [{word}]" in text
    assert "`agent` label" in text


@pytest.mark.parametrize("label", ["agent", "ai`bot"])
def test_generated_replies_never_trigger_themselves(label: str) -> None:
    # The bot's own replies must not read as commands if anyone quotes or parses them.
    for text in (help_text(label), usage_text(label), commands_table_markdown()):
        assert parse_commands(text) == []


def test_commands_table() -> None:
    table = commands_table_markdown().splitlines()
    assert table[0] == "| Command | Aliases | What it does |"
    assert len(table) == 2 + len(COMMANDS)
    assert table[3] == ("| `/agent cancel` | `/agent stop` | Cancel the active run of this "
                        "issue or pull request. |")
    assert all(row.count(" | ") == 2 for row in table)


@pytest.mark.parametrize("body", ["/agent run --fresh fix it", "/agent --fresh fix it",
                                  "/agent --agent claude --fresh fix it"])
def test_fresh_is_a_flag(body: str) -> None:
    result = one(body)
    assert result.fresh and result.text == "fix it"
    assert not one("/agent run fix it").fresh


@pytest.mark.parametrize("body, message", [
    ("/agent --fresh=yes fix it", "option `--fresh` takes no value"),
    ("/agent --fresh --fresh fix it", "option `--fresh` is given more than once"),
    ("/agent status --fresh", "`/agent status` takes no options"),
])
def test_fresh_takes_no_value_and_comes_once(body: str, message: str) -> None:
    assert error(body) == message


def test_profile_option_names_a_profile() -> None:
    result = one("/agent run --profile Backend --agent codex add it")
    assert result == Command(verb="run", text="add it", agent="codex", profile="backend")
    assert error("/agent --profile back/end go") == (
        "`back/end` is not a profile name (letters, digits, `-` and `_`)")


# variants and pick


@pytest.mark.parametrize("body, variants, agents, models", [
    ("/agent run --variants 3 fix it", 3, (), ()),
    ("/agent --variants=4 --agent claude,codex fix it", 4, ("claude", "codex"), ()),
    ("/agent --agent CLAUDE,codex --model big-1,small-2 fix it", None, ("claude", "codex"),
     ("big-1", "small-2")),
    ("/agent --model x fix it", None, (), ()),
])
def test_variants_and_spread_options(body: str, variants: int | None,
                                     agents: tuple[str, ...], models: tuple[str, ...]) -> None:
    command = one(body)
    assert isinstance(command, Command) and command.text == "fix it"
    assert (command.variants, command.agents, command.models) == (variants, agents, models)
    # The first of a list is the run's agent and model where one is needed.
    assert command.agent == (agents[0] if agents else None)
    assert command.model == (models[0] if models else ("x" if "--model x" in body else None))


@pytest.mark.parametrize("body, message", [
    ("/agent --variants 0 go", "`0` is not a number of variants for `--variants`"),
    ("/agent --variants two go", "`two` is not a number of variants"),
    ("/agent --variants -3 go", "`-3` is not a number of variants"),
    ("/agent --variants 1000 go", "`1000` is not a number of variants"),
    ("/agent --variants ³ go", "is not a number of variants"),
    ("/agent --variants", "`--variants` needs a value (N)"),
    ("/agent --agent claude,,codex go", "`--agent` has an empty entry in `claude,,codex`"),
    ("/agent --agent claude, go", "has an empty entry"),
    ("/agent --agent claude,gpt go", "unknown agent `gpt`"),
    ("/agent --model ok,bad;name go", "`bad;name` is not a model name"),
    ("/agent --model " + ",".join(["m"] * 21) + " go", "`--model` names 21 values; at most 20"),
    ("/agent --variants 2 --variants 3 go", "`--variants` is given more than once"),
])
def test_bad_variants_and_spreads_are_explained(body: str, message: str) -> None:
    assert message in error(body)


@pytest.mark.parametrize("body, variant", [
    ("/agent pick", None), ("/agent pick 2", 2), ("/agent pick #3", 3), ("/agent PICK 12", 12),
])
def test_pick_takes_an_optional_variant_number(body: str, variant: int | None) -> None:
    assert one(body) == Command(verb="pick", variant=variant)


@pytest.mark.parametrize("body", [
    "/agent pick two", "/agent pick 0", "/agent pick 2 3", "/agent pick -1", "/agent pick ²",
    "/agent pick 1000", "/agent pick 2 please",
])
def test_pick_refuses_anything_but_one_number(body: str) -> None:
    assert "`/agent pick` takes the number of one variant, like `/agent pick 2`" in error(body)


def test_pick_takes_no_options() -> None:
    assert "`/agent pick` takes no options" in error("/agent pick --variants 2")
