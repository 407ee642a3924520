"""Which model provider each agent needs, and whether the gateway has the operator's key."""

from __future__ import annotations

import re

from bot.config.settings import Settings
from bot.markdown import code_span

PROVIDERS = ("anthropic", "openai")
NAMES = {"anthropic": "Anthropic", "openai": "OpenAI"}
# The variables that give the gateway each provider's credential, in the order it reads them.
VARIABLES = {"anthropic": ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
             "openai": ("OPENAI_API_KEY", "CODEX_API_KEY")}
# Agents bound to one provider's API; OpenCode and aider speak to either, by model.
_AGENT_PROVIDER = {"claude": "anthropic", "codex": "openai"}
_ANTHROPIC_MODEL = re.compile(r"claude|sonnet|opus|haiku", re.I)
_OPENAI_MODEL = re.compile(r"gpt-|o[1-9](?:$|-)|codex|chatgpt", re.I)

MISSING = ("the {agent} agent needs {what}, and the operator has not given agentbot's gateway "
           "{which}: set {variables} in the gateway's environment{declared}")
MISSING_ONE = "a key for {name}"
MISSING_ANY = "a key for Anthropic or OpenAI (the model {model} names neither)"
MISSING_DECLARED = ", and list the provider in `AGENTBOT_MODEL_PROVIDERS` for the bot"


def providers_for(agent: str, model: str | None) -> tuple[str, ...]:
    """The providers any one of which can serve a run of `agent` with `model` (empty: the
    agent needs none the bot knows of, as the `command` agent)."""
    if agent in _AGENT_PROVIDER:
        return (_AGENT_PROVIDER[agent],)
    if agent not in ("opencode", "aider"):
        return ()
    prefix, _, tail = (model or "").rpartition("/")
    if prefix.lower() == "anthropic" or _ANTHROPIC_MODEL.match(tail):
        return ("anthropic",)
    if prefix.lower() == "openai" or _OPENAI_MODEL.match(tail):
        return ("openai",)
    return PROVIDERS


def configured(settings: Settings) -> frozenset[str] | None:
    """The providers the gateway has a credential for, or None when this process cannot
    tell (the gateway runs apart, with keys this process never sees, and the operator has not
    listed them in AGENTBOT_MODEL_PROVIDERS)."""
    if settings.model_providers is not None:
        return frozenset(name.strip() for name in settings.model_providers.split(",")
                         if name.strip())
    held = frozenset(name for name, present in (
        ("anthropic", settings.anthropic_api_key or settings.claude_code_oauth_token),
        ("openai", settings.openai_api_key)) if present)
    # With the local executor the gateway runs in this process, with these very settings.
    if held or settings.executor_name == "local":
        return held
    return None


def missing_credentials(settings: Settings, agent: str, model: str | None) -> str | None:
    """Why a run of `agent` with `model` cannot reach its model, naming the variables to set;
    None when it can (or when this process cannot tell)."""
    needed = providers_for(agent, model)
    have = configured(settings)
    if not needed or have is None or have & set(needed):
        return None
    variables = [name for provider in needed for name in VARIABLES[provider]]
    shown = " or ".join(code_span(name) for name in variables)
    if len(needed) == 1:
        what = MISSING_ONE.format(name=NAMES[needed[0]])
        which = "one"
    else:
        what = MISSING_ANY.format(model=code_span(model or "(the default)", 60))
        which = "either"
    return MISSING.format(agent=code_span(agent), what=what, which=which, variables=shown,
                          declared=MISSING_DECLARED if settings.model_providers is not None
                          else "")
