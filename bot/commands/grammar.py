"""The `/agent` slash-command grammar and the command registry that help is generated from."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.config.budget import Budget, parse_budget
from bot.config.repo import PROFILE_NAME
from bot.config.settings import AGENTS, MODEL_NAME, parse_duration
from bot.markdown import SUGGESTION_CUTOFF, closest, code_span

PREFIX = "/agent"
# How close a lone word must be to a verb to be read as a misspelt verb, not as instructions.
VERB_CUTOFF = 0.75
_COMMAND_LINE = re.compile(r" {0,3}" + re.escape(PREFIX) + r"(?=\s|$)")
_WORD = re.compile(r"\S+")

# Markdown blocks that hide a line from being a command (CommonMark's rules, simplified where
# a mistake would only make a line not count; a stray trigger costs more than a missed one).
_FENCE_OPEN = re.compile(
    r"(?P<lead> {0,3}(?:(?:[-*+]|\d{1,9}[.)])[ \t]+)?)(?P<fence>`{3,}|~{3,})(?P<info>.*)"
)
_QUOTE = re.compile(r" {0,3}>")
_COMMENT_BLOCK = re.compile(r" {0,3}<!--")
_INLINE_CODE = re.compile(r"`+")


@dataclass(frozen=True)
class OptionInfo:
    """One option of the grammar; written `--name VALUE` or `--name=VALUE`."""

    name: str
    metavar: str
    summary: str

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def usage(self) -> str:
        """How it is written: `--name VALUE`, or `--name` alone for a flag (no metavar)."""
        return f"{self.flag} {self.metavar}" if self.metavar else self.flag


@dataclass(frozen=True)
class CommandInfo:
    """One verb of the grammar, as help and usage present it."""

    name: str
    aliases: tuple[str, ...]
    usage: str
    summary: str
    # Only a verb that takes input accepts options and instructions; the others stand alone.
    takes_input: bool = False


OPTIONS: tuple[OptionInfo, ...] = (
    OptionInfo("agent", "NAME", "the coding agent to run: " + ", ".join(AGENTS)
               + "; several, like `claude,codex`, spread the variants over them"),
    OptionInfo("model", "NAME", "the model the agent uses, passed to it as given; several, "
               "like `x,y`, spread the variants over them"),
    OptionInfo("profile", "NAME",
               "a profile of the repository's `.github/agentbot.yml` (its agent, model, setup, "
               "instructions, system prompt and timeout; the options above still win)"),
    OptionInfo("fresh", "",
               "start the agent afresh instead of continuing the agent session of this pull "
               "request's or issue's latest run"),
    OptionInfo("timeout", "DURATION",
               "how long the run may take, like 20m or 1h30m (the operator's limit caps it)"),
    OptionInfo("budget", "LIMIT",
               "what the run's model may spend, like $3, 500k (tokens) or $3,2M (the "
               "operator's limit caps it); at the limit the run stops and its work so far "
               "becomes a partial draft pull request"),
    OptionInfo("variants", "N",
               "run N variants of the request, each in its own sandbox and on its own "
               "branch, then keep one with `/agent pick K` (the operator's "
               "`AGENTBOT_MAX_VARIANTS` caps N)"),
)

_SYNOPSIS = " ".join(f"[{option.usage}]" for option in OPTIONS)

COMMANDS: tuple[CommandInfo, ...] = (
    CommandInfo(
        "run", (), f"{PREFIX} [run] {_SYNOPSIS} <instructions>",
        "On an issue: implement it (its title, body and these instructions). On a pull "
        "request: change its branch as instructed. The lines below the command, up to the "
        f"next {PREFIX} line, belong to the instructions.",
        takes_input=True,
    ),
    CommandInfo("cancel", ("stop",), f"{PREFIX} cancel",
                "Cancel the active run of this issue or pull request."),
    CommandInfo("retry", (), f"{PREFIX} retry", "Run the latest run again with the same inputs."),
    CommandInfo("status", (), f"{PREFIX} status",
                "List the runs of this issue or pull request with their states and links."),
    CommandInfo("pick", (), f"{PREFIX} pick [K]",
                "Keep variant K of the latest variants here: open its pull request (as a "
                "single run would) and delete the other variants' branches. Without K, the "
                "one variant that succeeded."),
    CommandInfo("help", (), f"{PREFIX} help", "Show this help."),
    CommandInfo("approve", (), f"{PREFIX} approve",
                "Start the run that waits for approval here (asked for by someone without "
                "write access), if its issue, pull request and request are unchanged since."),
    CommandInfo("deny", (), f"{PREFIX} deny",
                "Refuse the run that waits for approval here."),
)

# The most entries of `--agent a,b,...` or `--model x,y,...` (more than any variant count).
LIST_MOST = 20

_VERBS = {word: info for info in COMMANDS for word in (info.name, *info.aliases)}
_OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}

# User-facing text. Words the user typed are shown as inline code, so a stray `@team` or
# Markdown in them can neither ping anyone nor break the reply.
UNKNOWN_VERB = "unknown command {word}"
DID_YOU_MEAN = "; did you mean {suggestion}?"
UNKNOWN_OPTION = "unknown option {option}"
MISSING_VALUE = "option {option} needs a value ({metavar})"
REPEATED_OPTION = "option {option} is given more than once"
FLAG_VALUE = "option {option} takes no value"
BAD_DURATION = "{value} is not a duration for {option}; write it like `20m` or `1h30m`"
UNKNOWN_AGENT = "unknown agent {value}; the agents are {agents}"
BAD_MODEL = "{value} is not a model name"
BAD_PROFILE = "{value} is not a profile name (letters, digits, `-` and `_`)"
NO_OPTIONS = "{command} takes no options"
BAD_VARIANTS = "{value} is not a number of variants for {option}; write it like `--variants 3`"
EMPTY_ENTRY = "{option} has an empty entry in {value}; separate names with single commas"
LIST_TOO_LONG = "{option} names {count} values; at most {most}"
BAD_PICK = "{command} takes the number of one variant, like {example}"
NO_TEXT = "{command} takes no instructions; for instructions that begin with {word}, write {hint}"
USAGE_TITLE = "**Usage**"
USAGE_FOOTER = "Adding the {label} label to an issue starts a run too. Comment {help} for details."
HELP_TITLE = "### agentbot commands"
HELP_INTRO = (
    "Start a line of a new comment on an issue or pull request with {prefix}. A run asked "
    "for by someone without write, maintain or admin permission on the repository waits for "
    "the approval of someone with it. Lines in code blocks, quotes and HTML comments are "
    "ignored, and edited comments never trigger a run."
)
HELP_OPTIONS = ("**Options** go between the command and the instructions "
                "({example} works too, and {end} ends them):")
HELP_LABEL = ("**Label**: adding the {label} label to an issue starts a run for it, as "
              "{prefix} with no instructions would; a label `agent:NAME` does the same with "
              "the profile NAME.")
HELP_ALIASES = " (also {aliases})"


@dataclass(frozen=True)
class Command:
    """One parsed `/agent` line; `verb` is canonical (`stop` arrives as `cancel`)."""

    verb: str
    text: str = ""
    agent: str | None = None
    model: str | None = None
    timeout: int | None = None
    fresh: bool = False  # `--fresh`: a new agent session, not the earlier run's
    budget: Budget | None = None
    line: int = 1
    profile: str | None = None
    # Several agents or models (`--agent claude,codex`) spread variants (empty for one);
    # `agent` and `model` are their first.
    agents: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    variants: int | None = None
    variant: int | None = None  # `/agent pick K`


@dataclass(frozen=True)
class CommandError:
    """A `/agent` line that could not be read, with a short message that says why."""

    message: str
    line: int


class _Invalid(Exception):
    """Raised inside the parser; becomes a CommandError for the line."""


def parse_commands(body: str | None) -> list[Command | CommandError]:
    """Every `/agent` command of a comment body, in order; code, quotes and comments skipped."""
    if not body:
        return []
    lines = _classify(body.lstrip("\ufeff"))
    starts = [i for i, line in enumerate(lines)
              if line is not None and line[1] and _COMMAND_LINE.match(line[0].expandtabs(4))]
    results: list[Command | CommandError] = []
    for n, index in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        following = [line[0] for line in lines[index + 1:end] if line is not None]
        rest = lines[index][0].lstrip(" ")[len(PREFIX):]  # type: ignore[index]
        try:
            results.append(_parse_line(rest, following, index + 1))
        except _Invalid as exc:
            results.append(CommandError(str(exc), index + 1))
    return results


def _classify(body: str) -> list[tuple[str, bool] | None]:
    """Each line as (text, may start a command); None for a line hidden in an HTML comment.
    Code, quote and indented lines keep their text, since they can be part of instructions."""
    lines: list[tuple[str, bool] | None] = []
    fence: tuple[str, int, int] | None = None  # fence character, length, indent allowance
    in_comment = False
    previous_blank = True
    for line in body.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        expanded = line.expandtabs(4)
        if fence is not None:
            char, length, allowance = fence
            stripped = expanded.lstrip(" ")
            run = len(stripped) - len(stripped.lstrip(char))
            if (run >= length and not stripped[run:].strip()
                    and len(expanded) - len(stripped) <= allowance):
                fence = None
            lines.append((line, False))
            continue
        if in_comment:
            in_comment = "-->" not in line
            lines.append(None)
            continue
        blank = not line.strip()
        indented = len(expanded) - len(expanded.lstrip(" ")) >= 4
        if blank or (indented and previous_blank) or _QUOTE.match(expanded):
            # An indented line after a blank one is indented code (and so is the next one).
            previous_blank = blank or (indented and previous_blank)
            lines.append((line, False))
            continue
        previous_blank = False
        opening = _FENCE_OPEN.fullmatch(expanded)
        if opening and not (opening["fence"][0] == "`" and "`" in opening["info"]):
            fence = (opening["fence"][0], len(opening["fence"]), len(opening["lead"]) + 3)
            lines.append((line, False))
        elif _COMMENT_BLOCK.match(expanded):
            in_comment = "-->" not in line[line.index("<!--") + 4:]
            lines.append(None)
        else:
            text, in_comment = _strip_inline_comments(line)
            lines.append((text, True))
    return lines


def _strip_inline_comments(line: str) -> tuple[str, bool]:
    """The line without `<!-- -->` spans outside code spans; True if a comment stays open."""
    out: list[str] = []
    position = 0
    while position < len(line):
        opener = line.find("<!--", position)
        tick = _INLINE_CODE.search(line, position)
        if tick and (opener == -1 or tick.start() < opener):
            close = line.find(tick.group(), tick.end())
            stop = close + len(tick.group()) if close != -1 else tick.end()
            out.append(line[position:stop])
            position = stop
            continue
        if opener == -1:
            out.append(line[position:])
            break
        out.append(line[position:opener])
        closer = line.find("-->", opener + 4)
        if closer == -1:
            return "".join(out), True
        position = closer + 3
    return "".join(out), False


def _parse_line(rest: str, following: list[str], line: int) -> Command:
    words = list(_WORD.finditer(rest))
    first = words[0].group() if words else ""
    word = first.rstrip(".:!?,").lower()
    info = _VERBS.get(word)
    if info is not None:
        words = words[1:]
    elif len(words) == 1 and not first.startswith("--"):
        # A lone word close to a verb is a typo; a run with it as instructions would surprise.
        suggestion = _suggest(word, list(_VERBS), VERB_CUTOFF, f"{PREFIX} ")
        if suggestion:
            raise _Invalid(UNKNOWN_VERB.format(word=code_span(first, 40)) + suggestion)
    command = info or _VERBS["run"]
    values, index = _parse_options(command, word, [w.group() for w in words])
    text = rest[words[index].start():].strip() if index < len(words) else ""
    if command.name == "pick":
        return Command(verb="pick", line=line, variant=_pick_number(text))
    if not command.takes_input:
        if text:
            raise _Invalid(NO_TEXT.format(command=code_span(f"{PREFIX} {word}"),
                                          word=code_span(first, 40),
                                          hint=code_span(f"{PREFIX} run {first} {text}", 60)))
        return Command(verb=command.name, line=line)
    lines = ([text] if text else []) + following
    while lines and not lines[0].strip():
        lines.pop(0)
    agents: tuple[str, ...] = values.get("agent") or ()  # type: ignore[assignment]
    models: tuple[str, ...] = values.get("model") or ()  # type: ignore[assignment]
    return Command(
        verb=command.name,
        text="\n".join(lines).rstrip(),
        agent=agents[0] if agents else None,
        model=models[0] if models else None,
        agents=agents if len(agents) > 1 else (),
        models=models if len(models) > 1 else (),
        variants=values.get("variants"),  # type: ignore[arg-type]
        timeout=values.get("timeout"),  # type: ignore[arg-type]
        fresh=bool(values.get("fresh")),
        budget=values.get("budget"),  # type: ignore[arg-type]
        line=line,
        profile=values.get("profile"),  # type: ignore[arg-type]
    )


def _parse_options(command: CommandInfo, verb: str,
                   words: list[str]) -> tuple[dict[str, object], int]:
    """The options at the start of words, and the index of the first word of the text."""
    values: dict[str, object] = {}
    index = 0
    while index < len(words) and words[index].startswith("--"):
        word = words[index]
        index += 1
        if word == "--":
            break
        if not command.takes_input:
            raise _Invalid(NO_OPTIONS.format(command=code_span(f"{PREFIX} {verb}")))
        name, has_value, value = word[2:].partition("=")
        option = _OPTIONS_BY_NAME.get(name.lower())
        if option is None:
            raise _Invalid(UNKNOWN_OPTION.format(option=code_span("--" + name, 40))
                           + _suggest(name.lower(), list(_OPTIONS_BY_NAME), prefix="--"))
        if not option.metavar:  # a flag: present or not
            if has_value:
                raise _Invalid(FLAG_VALUE.format(option=code_span(option.flag)))
            if option.name in values:
                raise _Invalid(REPEATED_OPTION.format(option=code_span(option.flag)))
            values[option.name] = True
            continue
        if not has_value and index < len(words) and not words[index].startswith("--"):
            value = words[index]
            index += 1
        if not value:
            raise _Invalid(MISSING_VALUE.format(option=code_span(option.flag),
                                                metavar=option.metavar))
        if option.name in values:
            raise _Invalid(REPEATED_OPTION.format(option=code_span(option.flag)))
        values[option.name] = _option_value(option, value)
    return values, index


def _pick_number(text: str) -> int | None:
    """The K of `/agent pick K` (`#K` too), None without one; _Invalid for anything else."""
    if not text:
        return None
    number = text.removeprefix("#")
    if number.isascii() and number.isdigit() and len(number) <= 3 and int(number) >= 1:
        return int(number)
    raise _Invalid(BAD_PICK.format(command=code_span(f"{PREFIX} pick"),
                                   example=code_span(f"{PREFIX} pick 2")))


def _option_value(option: OptionInfo, value: str) -> str | int | Budget | tuple[str, ...]:
    """The option's value, normalised, or _Invalid saying what is wrong with it."""
    if option.name in ("agent", "model"):
        # A list spreads variants over its entries; one entry is the usual single value.
        parts = value.split(",")
        if len(parts) > LIST_MOST:
            raise _Invalid(LIST_TOO_LONG.format(option=code_span(option.flag),
                                                count=len(parts), most=LIST_MOST))
        if not all(parts):
            raise _Invalid(EMPTY_ENTRY.format(option=code_span(option.flag),
                                              value=code_span(value, 60)))
        return tuple(str(_single_value(option, part)) for part in parts)
    if option.name == "variants":
        if value.isascii() and value.isdigit() and len(value) <= 3 and int(value) >= 1:
            return int(value)
        raise _Invalid(BAD_VARIANTS.format(value=code_span(value, 40),
                                           option=code_span(option.flag)))
    return _single_value(option, value)


def _single_value(option: OptionInfo, value: str) -> str | int | Budget:
    if option.name == "budget":
        try:
            return parse_budget(value)
        except ValueError as exc:
            raise _Invalid(f"{code_span(option.flag)}: {exc}") from None
    if option.name == "timeout":
        try:
            return parse_duration(value)
        except ValueError:
            raise _Invalid(BAD_DURATION.format(value=code_span(value, 40),
                                               option=code_span(option.flag))) from None
    if option.name == "agent":
        if value.lower() in AGENTS:
            return value.lower()
        agents = ", ".join(code_span(agent) for agent in AGENTS)
        raise _Invalid(UNKNOWN_AGENT.format(value=code_span(value, 40), agents=agents)
                       + _suggest(value.lower(), list(AGENTS)))
    if option.name == "profile":
        if PROFILE_NAME.fullmatch(value):
            return value.lower()
        raise _Invalid(BAD_PROFILE.format(value=code_span(value, 40)))
    if not MODEL_NAME.fullmatch(value):
        raise _Invalid(BAD_MODEL.format(value=code_span(value, 40)))
    return value


def _suggest(word: str, choices: list[str], cutoff: float = SUGGESTION_CUTOFF,
             prefix: str = "") -> str:
    """A "did you mean" for the closest choice, or nothing when none is close."""
    close = closest(word, choices, cutoff)
    return DID_YOU_MEAN.format(suggestion=code_span(prefix + close)) if close else ""


def usage_text(trigger_label: str) -> str:
    """A short Markdown usage block for replies to a command that could not be read."""
    lines = []
    for info in COMMANDS:
        lines.append(info.usage)
        lines += [info.usage.replace(f"{PREFIX} {info.name}", f"{PREFIX} {alias}", 1)
                  for alias in info.aliases]
    block = "\n".join(["```text", *lines, "```"])
    footer = USAGE_FOOTER.format(label=code_span(trigger_label), help=code_span(f"{PREFIX} help"))
    return f"{USAGE_TITLE}\n\n{block}\n\n{footer}"


def help_text(trigger_label: str) -> str:
    """The reply to `/agent help`: every command, the options and the label trigger."""
    parts = [HELP_TITLE, "", HELP_INTRO.format(prefix=code_span(PREFIX)), ""]
    for info in COMMANDS:
        aliases = ", ".join(code_span(f"{PREFIX} {alias}") for alias in info.aliases)
        also = HELP_ALIASES.format(aliases=aliases) if aliases else ""
        parts.append(f"- {code_span(info.usage)}{also}: {info.summary}")
    parts += ["", HELP_OPTIONS.format(example=code_span("--name=value"), end=code_span("--")), ""]
    parts += [f"- {code_span(o.usage)}: {o.summary}" for o in OPTIONS]
    parts += ["", HELP_LABEL.format(label=code_span(trigger_label), prefix=code_span(PREFIX))]
    return "\n".join(parts)


def _cell(text: str) -> str:
    # A pipe ends a cell of a GitHub table even inside inline code.
    return text.replace("|", "\\|")


def commands_table_markdown() -> str:
    """A Markdown table of the commands (for the README), from the registry."""
    rows = ["| Command | Aliases | What it does |", "| --- | --- | --- |"]
    for info in COMMANDS:
        aliases = ", ".join(code_span(f"{PREFIX} {alias}") for alias in info.aliases)
        usage = _cell(code_span(info.usage))
        rows.append(f"| {usage} | {_cell(aliases)} | {_cell(info.summary)} |")
    return "\n".join(rows)
