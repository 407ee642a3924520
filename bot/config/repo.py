"""`.github/agentbot.yml`: parsed and checked with line numbers, capped by the operator."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, PrivateAttr

from bot.config.budget import Budget, parse_budget
from bot.config.settings import AGENTS, MODEL_NAME, Settings, parse_duration
from bot.markdown import closest, code_span

CONFIG_PATH = ".github/agentbot.yml"
KEYS = ("trigger_label", "agent", "model", "timeout", "setup", "instructions", "draft",
        "max_changed_files", "protected_paths", "allowed_bots", "allow_forks", "budget",
        "network", "approval", "profiles")
NETWORK_KEYS = ("allow",)
# What a profile sets; the keys of the same name at the top level say it for every run.
PROFILE_KEYS = ("agent", "model", "setup", "instructions", "system_prompt", "timeout",
                "variants")
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
# The label that picks a profile: `agent:backend`.
PROFILE_LABEL_PREFIX = "agent:"
CONTENTS_URL = "/repos/{owner}/{repo}/contents/{+path}{?ref}"
LABEL_LIMIT = 50  # GitHub's limit for a label's name
# Instructions longer than this are a whole document pasted into every prompt, not guidance.
INSTRUCTIONS_LIMIT = 64 * 1024
_HOST_PATTERN = re.compile(r"(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::\d{1,5})?")
_LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}(?:\[bot\])?")
FILE_SUFFIXES = (".md", ".markdown", ".txt", ".rst")
_BOOL, _INT, _NULL = (f"tag:yaml.org,2002:{name}" for name in ("bool", "int", "null"))

INVALID_YAML = "not valid YAML: {problem}"
NOT_UTF8 = "the file is not UTF-8 text; save it as UTF-8"
TOO_DEEP = "the YAML is nested too deeply to read"
NOT_A_MAPPING = "the file must be a mapping of keys to values, like `timeout: 20m`"
NOT_A_NAME = "keys are plain names, like `timeout`"
UNKNOWN_KEY = "unknown key{suggestion}; the keys are {keys}"
DID_YOU_MEAN = " (did you mean {suggestion}?)"
REPEATED_KEY = "is given twice (first on line {line})"
EXPECTED_TEXT = "expected text, got {kind}"
EXPECTED_ITEM = "expected {what} as text, got {kind} (quote an item that contains `: `)"
EXPECTED_FLAG = "expected `true` or `false`, got {value}"
EXPECTED_COUNT = "expected a whole number of at least 1, got {value}"
EMPTY_ITEM = "an item of the list is empty"
BAD_HOST = "{value} is not a host name; write `example.com`, `*.example.com` or `example.com:8443`"
EXPECTED_NETWORK = "expected a mapping like `allow: [example.com]`"
UNKNOWN_NETWORK_KEY = "unknown key {key} under `network`; the keys are {keys}"
ONE_LINE = "expected one line of text"
LONG_LABEL = f"a label name is at most {LABEL_LIMIT} characters"
UNKNOWN_AGENT = "unknown agent {value}{suggestion}; the agents are {agents}"
BAD_MODEL = "{value} is not a model name"
BAD_DURATION = "{value} is not a duration; write it like `20m`, `1h30m` or `900` (seconds)"
BAD_LOGIN = "{value} is not a GitHub login"
LONG_INSTRUCTIONS = f"the instructions are longer than {INSTRUCTIONS_LIMIT // 1024} KiB"
NO_AGENT_COMMAND = "the `command` agent needs AGENTBOT_AGENT_COMMAND, which the operator has " \
                   "not set"
THE_FILE = "the file"
TOO_LARGE = "{what} is larger than 1 MB, the most GitHub's contents API serves"
NOT_A_FILE = "{what} is a {kind}, not a file"
NOT_UTF8_FILE = "{what} is not UTF-8 text"
OUTSIDE = "{what} is outside the repository"
# `approval`: what a request from someone without write access leads to.
APPROVAL_REQUIRED = "required_for_outsiders"  # a run that waits for a writer's approval
APPROVAL_WRITERS_ONLY = "writers_only"  # a refusal, as before approvals existed
APPROVAL_MODES = (APPROVAL_REQUIRED, APPROVAL_WRITERS_ONLY)
BAD_APPROVAL = "unknown value {value}; `approval` is one of {modes}"
EXPECTED_PROFILES = "expected a mapping of profile names to their settings, like " \
                    "`backend: {agent: claude, system_prompt: docs/agent-backend.md}`"
EXPECTED_PROFILE = "expected a mapping of a profile's settings, like `agent: codex`"
BAD_PROFILE_NAME = "{value} is not a profile name: letters, digits, `-` and `_`, at most 40"
UNKNOWN_PROFILE_KEY = "unknown key {key} in profile {profile}{suggestion}; a profile's keys " \
                      "are {keys}"
REPEATED_PROFILE = "profile {profile} is given twice (first on line {line})"
UNKNOWN_PROFILE = "there is no profile {name} in {path}; {which}"
PROFILES_ARE = "its profiles are {names}"
NO_PROFILES = "it has no `profiles`"
SYSTEM_PROMPT_PATH = "expected the path of a file in the repository, like `docs/agent.md`"
LONG_SYSTEM_PROMPT = f"the system prompt is longer than {INSTRUCTIONS_LIMIT // 1024} KiB"
SYSTEM_PROMPT_MISSING = "{what} is not a file at {ref}; commit it, or fix the path"
INSTRUCTIONS_MISSING = ("{what} reads as a file path (one word with a `/`, or ending in .md or "
                        ".txt), but {ref} has no such file; commit it, or write the "
                        "instructions as text")


class ConfigError(Exception):
    """A config that cannot be used; `str()` names the file, line and key for the reply."""

    def __init__(self, message: str, *, path: str = CONFIG_PATH, line: int | None = None,
                 key: str | None = None) -> None:
        super().__init__(message)
        self.path, self.line, self.key, self.message = path, line, key, message

    def __str__(self) -> str:
        line = f", line {self.line}" if self.line is not None else ""
        key = f", key {code_span(self.key, 40)}" if self.key is not None else ""
        return f"{code_span(self.path, 100)}{line}{key}: {self.message}"


@dataclass(frozen=True)
class Profile:
    """A named set of run settings in `profiles:`; unset values fall back to the top level.
    `system_prompt` is a path until RepoConfigs.load reads the file; `lines` holds where
    each key's value was written, for errors about the file it names."""

    name: str
    agent: str | None = None
    model: str | None = None
    setup: tuple[str, ...] | None = None
    instructions: str = ""
    system_prompt: str | None = None
    timeout: int | None = None
    variants: int | None = None  # runs of each request, capped by AGENTBOT_MAX_VARIANTS
    lines: tuple[tuple[str, int], ...] = ()

    def line_of(self, key: str) -> int | None:
        """The line of `key`'s value in the config file, if it was written."""
        return dict(self.lines).get(key)


@dataclass(frozen=True)
class Network:
    """`network:` of the config: `allow` lists the hosts its runs ask to reach."""

    allow: tuple[str, ...] = ()


class RepoConfig(BaseModel):
    """A repository's settings as written (unset keys None); `effective()` applies defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trigger_label: str | None = None
    agent: str | None = None
    model: str | None = None
    timeout: int | None = None  # seconds
    setup: tuple[str, ...] = ()
    instructions: str = ""  # text; RepoConfigs.load replaces a path with the file's text
    draft: bool = True
    max_changed_files: int | None = None
    protected_paths: tuple[str, ...] = (".github/workflows/**",)
    allowed_bots: tuple[str, ...] = ()
    allow_forks: bool = False  # beyond the spec's keys: PRs from forks are refused by default
    budget: Budget | None = None
    network: Network = Network()
    approval: str = APPROVAL_REQUIRED
    profiles: tuple[Profile, ...] = ()
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)

    def line_of(self, key: str) -> int | None:
        """The line of `key`'s value in the file this was parsed from, if it was there."""
        return self._lines.get(key)

    # Values decide equality; where in the file they were written does not.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RepoConfig):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(tuple(self.__dict__.values()))


class _Bad(Exception):
    def __init__(self, message: str, node: yaml.Node) -> None:
        super().__init__(message)
        self.message, self.line = message, node.start_mark.line + 1
        self.key: str | None = None  # where inside the key's value, when it is nested


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a mapping" if isinstance(node, yaml.MappingNode) else "text"


def _shown(node: yaml.Node) -> str:
    return code_span(node.value, 40) if isinstance(node, yaml.ScalarNode) else _kind(node)


def _text(node: yaml.Node, *, one_line: bool = True) -> str | None:
    # The scalar as written, so `model: 4` is "4" and `timeout: 1:30` is not YAML 1.1's 90.
    if not isinstance(node, yaml.ScalarNode):
        raise _Bad(EXPECTED_TEXT.format(kind=_kind(node)), node)
    value = None if node.tag == _NULL else node.value.strip() or None
    if one_line and value is not None and "\n" in value:
        raise _Bad(ONE_LINE, node)
    return value


def _texts(what: str, check: Callable[[str], str | None] = lambda _: None
           ) -> Callable[[yaml.Node], tuple[str, ...] | None]:
    """A list of text items, or one item alone; `check` returns a problem with an item."""
    def items(node: yaml.Node) -> tuple[str, ...] | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return None
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
        values = []
        for item in nodes:
            if not isinstance(item, yaml.ScalarNode):
                raise _Bad(EXPECTED_ITEM.format(what=what, kind=_kind(item)), item)
            value = _text(item, one_line=False)
            problem = EMPTY_ITEM if value is None else check(value)
            if problem or value is None:
                raise _Bad(problem or EMPTY_ITEM, item)
            values.append(value)
        return tuple(values)
    return items


def _flag(node: yaml.Node) -> bool | None:
    if isinstance(node, yaml.ScalarNode) and node.tag in (_NULL, _BOOL):
        return None if node.tag == _NULL else yaml.SafeLoader.bool_values[node.value.lower()]
    raise _Bad(EXPECTED_FLAG.format(value=_shown(node)), node)


def _count(node: yaml.Node) -> int | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
        return None
    if isinstance(node, yaml.ScalarNode) and node.tag == _INT:
        value = int(yaml.SafeLoader("").construct_yaml_int(node))  # 1_000, 0x10 as YAML says
        if value >= 1:
            return value
    raise _Bad(EXPECTED_COUNT.format(value=_shown(node)), node)


def _checked(check: Callable[[str], str | None], *, one_line: bool = True,
             convert: Callable[[str], Any] = lambda v: v) -> Callable[[yaml.Node], Any]:
    """One text value; `check` returns what is wrong with it, or None."""
    def value(node: yaml.Node) -> Any:
        text = _text(node, one_line=one_line)
        if text is None:
            return None
        problem = check(text)
        if problem:
            raise _Bad(problem, node)
        return convert(text)
    return value


def _agent_problem(value: str) -> str | None:
    if value.lower() in AGENTS:
        return None
    return UNKNOWN_AGENT.format(value=code_span(value, 40),
                                suggestion=_suggest(value.lower(), AGENTS),
                                agents=", ".join(code_span(agent) for agent in AGENTS))


def _duration_problem(value: str) -> str | None:
    try:
        parse_duration(value)
    except ValueError:
        return BAD_DURATION.format(value=code_span(value, 40))
    return None


def _suggest(word: str, choices: tuple[str, ...]) -> str:
    close = closest(word, choices)
    return DID_YOU_MEAN.format(suggestion=code_span(close)) if close else ""


_CHECKS: dict[str, Callable[[yaml.Node], Any]] = {
    "trigger_label": _checked(lambda v: LONG_LABEL if len(v) > LABEL_LIMIT else None),
    "agent": _checked(_agent_problem, convert=str.lower),
    "model": _checked(lambda v: None if MODEL_NAME.fullmatch(v)
                      else BAD_MODEL.format(value=code_span(v, 40))),
    "timeout": _checked(_duration_problem, convert=parse_duration),
    "setup": _texts("a shell command"),
    "instructions": _checked(lambda v: LONG_INSTRUCTIONS if len(v) > INSTRUCTIONS_LIMIT
                             else None, one_line=False),
    "draft": _flag,
    "max_changed_files": _count,
    # Globs match paths from the repository's root, so "/src/**" means "src/**".
    "protected_paths": lambda node: _globs(_texts("a path glob")(node)),
    "allowed_bots": _texts("a login", lambda v: None if _LOGIN.fullmatch(v)
                           else BAD_LOGIN.format(value=code_span(v, 40))),
    "allow_forks": _flag,
    "budget": lambda node: _budget(node),
    "network": lambda node: _network(node),
    "approval": _checked(lambda v: None if v in APPROVAL_MODES else BAD_APPROVAL.format(
        value=code_span(v, 40), modes=", ".join(code_span(m) for m in APPROVAL_MODES))),
}


def _profiles(node: yaml.Node) -> tuple[Profile, ...] | None:
    """`profiles: {name: {agent, model, setup, instructions, system_prompt, timeout,
    variants}}`."""
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
        return None
    if not isinstance(node, yaml.MappingNode):
        raise _Bad(EXPECTED_PROFILES, node)
    profiles: dict[str, Profile] = {}
    first: dict[str, int] = {}
    for name_node, body in node.value:
        name = str(name_node.value) if isinstance(name_node, yaml.ScalarNode) else ""
        if not PROFILE_NAME.fullmatch(name):
            raise _Bad(BAD_PROFILE_NAME.format(value=code_span(name or _kind(name_node), 50)),
                       name_node)
        if name.lower() in first:
            raise _Bad(REPEATED_PROFILE.format(profile=code_span(name),
                                               line=first[name.lower()]), name_node)
        first[name.lower()] = name_node.start_mark.line + 1
        profiles[name.lower()] = _profile(name.lower(), body)
    return tuple(profiles.values())


def _profile(name: str, node: yaml.Node) -> Profile:
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
        return Profile(name)  # `backend:` alone: the top level's settings under a name
    if not isinstance(node, yaml.MappingNode):
        raise _Bad(EXPECTED_PROFILE, node)
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else ""
        problem = None
        if key not in PROFILE_KEYS:
            problem = _Bad(UNKNOWN_PROFILE_KEY.format(
                key=code_span(key or _kind(key_node), 40), profile=code_span(name),
                suggestion=_suggest(key.lower(), PROFILE_KEYS),
                keys=", ".join(code_span(k) for k in PROFILE_KEYS)), key_node)
        elif key in lines:
            problem = _Bad(REPEATED_KEY.format(line=lines[key]), key_node)
        if problem is not None:
            problem.key = f"profiles.{name}.{key}"[:60]
            raise problem
        lines[key] = value_node.start_mark.line + 1
        check = {"system_prompt": _system_prompt, "variants": _count}.get(key) \
            or _CHECKS[key]
        try:
            value = check(value_node)
        except _Bad as bad:
            bad.key = f"profiles.{name}.{key}"
            raise
        if value is not None:
            values[key] = value
    return Profile(name, lines=tuple(lines.items()), **values)


def _system_prompt(node: yaml.Node) -> str | None:
    text = _text(node)
    if text is None:
        return None
    path = text.removeprefix("./").strip("/")
    if not path or any(c.isspace() for c in path) or "://" in path:
        raise _Bad(SYSTEM_PROMPT_PATH, node)
    return path


_CHECKS["profiles"] = _profiles


def _budget(node: yaml.Node) -> Budget | None:
    text = _text(node)
    if text is None:
        return None
    try:
        return parse_budget(text)
    except ValueError as exc:
        raise _Bad(str(exc), node) from None


def _network(node: yaml.Node) -> Network | None:
    """`network: {allow: [host, ...]}`."""
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
        return None
    if not isinstance(node, yaml.MappingNode):
        raise _Bad(EXPECTED_NETWORK, node)
    hosts: tuple[str, ...] | None = None
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else ""
        if key not in NETWORK_KEYS:
            raise _Bad(UNKNOWN_NETWORK_KEY.format(
                key=code_span(str(key), 40),
                keys=", ".join(code_span(k) for k in NETWORK_KEYS)), key_node)
        hosts = _texts("a host name", lambda v: None if _HOST_PATTERN.fullmatch(v)
                       else BAD_HOST.format(value=code_span(v, 60)))(value_node)
    return Network(allow=hosts or ())


def _globs(globs: tuple[str, ...] | None) -> tuple[str, ...] | None:
    return None if globs is None else tuple(glob.lstrip("/") or glob for glob in globs)


def _compose(text: str) -> yaml.Node | None:
    # Nodes rather than Python values: they carry the line of every key and value.
    loader = yaml.SafeLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def parse(text: str | bytes, path: str = CONFIG_PATH) -> RepoConfig:
    """The config in `text`; ConfigError names the first problem's line and key."""
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[:exc.start].count(b"\n") + 1
            raise ConfigError(NOT_UTF8, path=path, line=line) from None
    try:
        root = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError(INVALID_YAML.format(problem=problem), path=path,
                          line=mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as exc:  # a control character, say
        raise ConfigError(INVALID_YAML.format(problem=exc.reason), path=path,
                          line=text[:exc.position].count("\n") + 1) from None
    except RecursionError:
        raise ConfigError(TOO_DEEP, path=path) from None
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _NULL):
        return RepoConfig()  # empty, or only comments
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(NOT_A_MAPPING, path=path, line=root.start_mark.line + 1)
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in root.value:
        line, key = key_node.start_mark.line + 1, key_node.value
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
            raise ConfigError(NOT_A_NAME, path=path, line=line)
        if key not in _CHECKS:
            keys = ", ".join(code_span(k) for k in KEYS)
            raise ConfigError(UNKNOWN_KEY.format(suggestion=_suggest(key.lower(), KEYS),
                                                 keys=keys), path=path, line=line, key=key)
        if key in lines:
            raise ConfigError(REPEATED_KEY.format(line=lines[key]), path=path, line=line,
                              key=key)
        lines[key] = value_node.start_mark.line + 1
        try:
            value = _CHECKS[key](value_node)
        except _Bad as bad:
            raise ConfigError(bad.message, path=path, line=bad.line, key=bad.key or key) \
                from None
        if value is not None:
            values[key] = value
    config = RepoConfig(**values)
    config._lines.update(lines)
    return config


@dataclass(frozen=True)
class Effective:
    """What a run uses: the repository's values, the operator's defaults and caps."""

    trigger_label: str
    agent: str
    model: str | None
    timeout_seconds: int
    setup: tuple[str, ...]
    instructions: str
    draft: bool
    max_changed_files: int
    protected_paths: tuple[str, ...]
    allowed_bots: tuple[str, ...]
    allow_forks: bool
    budget: Budget = Budget()  # the repository's, capped by AGENTBOT_MAX_RUN_BUDGET
    network_allow: tuple[str, ...] = ()
    approval: str = APPROVAL_REQUIRED
    capped: tuple[str, ...] = ()  # keys whose value the operator's limit lowered
    profiles: tuple[Profile, ...] = ()
    profile: str | None = None  # the profile applied (with_profile), if any
    system_prompt: str = ""  # the profile's system prompt file's text
    variants: int = 1  # the profile's, capped by AGENTBOT_MAX_VARIANTS

    def allows_bot(self, login: str) -> bool:
        """Whether `allowed_bots` lists this bot; `name` and `name[bot]` are the same bot."""
        return _bot_name(login) in {_bot_name(bot) for bot in self.allowed_bots}


def _bot_name(login: str) -> str:
    return login.strip().lower().removesuffix("[bot]")


def effective(config: RepoConfig, settings: Settings) -> Effective:
    """The config with the operator's defaults and limits applied; ConfigError if unusable."""
    if config.agent == "command" and not settings.agent_command:
        raise ConfigError(NO_AGENT_COMMAND, line=config.line_of("agent"), key="agent")
    timeout = min(config.timeout or settings.run_timeout, settings.run_timeout)
    max_files = min(config.max_changed_files or settings.max_changed_files,
                    settings.max_changed_files)
    capped = tuple(key for key, given, used in (("timeout", config.timeout, timeout),
                                                ("max_changed_files", config.max_changed_files,
                                                 max_files)) if given and given > used)
    cap = settings.run_budget_cap
    if config.budget is not None and config.budget.exceeds(cap):
        capped += ("budget",)
    return Effective(
        trigger_label=config.trigger_label or settings.trigger_label,
        agent=config.agent or settings.default_agent, model=config.model,
        timeout_seconds=timeout, setup=config.setup, instructions=config.instructions,
        draft=config.draft, max_changed_files=max_files, protected_paths=config.protected_paths,
        allowed_bots=config.allowed_bots, allow_forks=config.allow_forks,
        budget=(config.budget or Budget()).capped(cap), network_allow=config.network.allow,
        approval=config.approval, capped=capped, profiles=config.profiles)


class UnknownProfile(Exception):
    """A profile the config does not have; `str()` names the ones it has."""


def with_profile(config: Effective, name: str, settings: Settings) -> Effective:
    """`config` as the profile `name` changes it: its agent, model, setup and timeout replace
    the top level's, its instructions follow the top level's, its system prompt is its own."""
    profile = next((p for p in config.profiles if p.name == name.lower()), None)
    if profile is None:
        names = ", ".join(code_span(p.name) for p in config.profiles)
        raise UnknownProfile(UNKNOWN_PROFILE.format(
            name=code_span(name, 40), path=code_span(CONFIG_PATH),
            which=PROFILES_ARE.format(names=names) if names else NO_PROFILES))
    if profile.agent == "command" and not settings.agent_command:
        raise ConfigError(NO_AGENT_COMMAND, line=profile.line_of("agent"),
                          key=f"profiles.{profile.name}.agent")
    agent = profile.agent or config.agent
    # The top level's model is for the top level's agent: another agent does not inherit it.
    model = profile.model or (config.model if agent == config.agent else None)
    timeout, capped = config.timeout_seconds, config.capped
    if profile.timeout is not None:
        timeout = min(profile.timeout, settings.run_timeout)
        capped = tuple(key for key in capped if key != "timeout") + (
            ("timeout",) if profile.timeout > timeout else ())
    variants = min(profile.variants or 1, settings.max_variants)
    if (profile.variants or 1) > variants:
        capped += ("variants",)
    instructions = "\n\n".join(part for part in (config.instructions, profile.instructions)
                               if part)
    return dataclasses.replace(
        config, agent=agent, model=model, timeout_seconds=timeout, capped=capped,
        setup=config.setup if profile.setup is None else profile.setup,
        instructions=instructions, system_prompt=profile.system_prompt or "",
        profile=profile.name, variants=variants)
