"""Loading `.github/agentbot.yml` (and its instructions file) with ETags per installation."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import MutableMapping
from typing import Any

import gidgethub
from cachetools import LRUCache

from bot.config.repo import (
    CONFIG_PATH,
    CONTENTS_URL,
    FILE_SUFFIXES,
    INSTRUCTIONS_LIMIT,
    INSTRUCTIONS_MISSING,
    LONG_INSTRUCTIONS,
    LONG_SYSTEM_PROMPT,
    NOT_A_FILE,
    NOT_UTF8_FILE,
    OUTSIDE,
    SYSTEM_PROMPT_MISSING,
    THE_FILE,
    TOO_LARGE,
    ConfigError,
    RepoConfig,
    parse,
)
from bot.markdown import code_span
from bot.tasks import SingleFlight


def instructions_path(instructions: str) -> str | None:
    """The repository path `instructions` names, or None when it is text.

    A path is one word (no whitespace, no `://`) with a `/` in it or ending in .md,
    .markdown, .txt or .rst: `docs/agent.md`, `AGENTS.md`, `./notes.txt`.
    """
    word = instructions.strip()
    if not word or any(c.isspace() for c in word) or "://" in word:
        return None
    if "/" not in word and not word.lower().endswith(FILE_SUFFIXES):
        return None
    return word.removeprefix("./").strip("/")


class _Unreadable(Exception):
    """A path GitHub has, but not as a file it serves: a directory, a symlink, over 1 MB."""


class RepoConfigs:
    """Loads configs through the installation clients, cached with their ETag per installation.

    Each installation has its own gidgethub cache, so a response fetched with one
    installation's token is never served to another. Errors other than a 404 (a 403 for a
    permission the App lacks, a 5xx) stay gidgethub's exceptions, for the caller to retry.
    """

    def __init__(self, github: Any, *, per_installation: int = 256,
                 installations: int = 1024) -> None:
        self._github = github
        self._per_installation = per_installation
        self._caches: LRUCache[int, MutableMapping[str, Any]] = LRUCache(maxsize=installations)
        self._loading: SingleFlight[RepoConfig] = SingleFlight()

    def _cache(self, installation_id: int) -> MutableMapping[str, Any]:
        cache = self._caches.get(installation_id)
        if cache is None:
            cache = self._caches[installation_id] = LRUCache(maxsize=self._per_installation)
        return cache

    async def load(self, installation_id: int, repo_full_name: str, ref: str) -> RepoConfig:
        """The config at `ref` (the default branch); no file gives the defaults. Loads asked
        for at the same moment (a burst of triggers on one repository) share one."""
        return await self._loading.run((installation_id, repo_full_name, ref),
                                       lambda: self._load(installation_id, repo_full_name, ref))

    async def _load(self, installation_id: int, repo_full_name: str, ref: str) -> RepoConfig:
        gh = self._github.installation(installation_id, cache=self._cache(installation_id))
        try:
            data = await _fetch(gh, repo_full_name, CONFIG_PATH, ref, THE_FILE)
        except _Unreadable as exc:
            raise ConfigError(str(exc)) from None
        if data is None:
            return RepoConfig()
        config = parse(data)
        path = instructions_path(config.instructions)
        if path is not None:
            text = await _file_text(gh, repo_full_name, path, ref, INSTRUCTIONS_MISSING, {
                "line": config.line_of("instructions"), "key": "instructions"})
            config = config.model_copy(update={"instructions": text})
        if not config.profiles:
            return config
        # Each profile's files are read with the config, so a broken one is reported when
        # the file changes, not when someone first picks the profile.
        profiles = []
        for profile in config.profiles:
            changes: dict[str, Any] = {}
            path = instructions_path(profile.instructions)
            if path is not None:
                changes["instructions"] = await _file_text(
                    gh, repo_full_name, path, ref, INSTRUCTIONS_MISSING,
                    {"line": profile.line_of("instructions"),
                     "key": f"profiles.{profile.name}.instructions"})
            if profile.system_prompt is not None:
                changes["system_prompt"] = await _file_text(
                    gh, repo_full_name, profile.system_prompt, ref, SYSTEM_PROMPT_MISSING,
                    {"line": profile.line_of("system_prompt"),
                     "key": f"profiles.{profile.name}.system_prompt"}, LONG_SYSTEM_PROMPT)
            profiles.append(dataclasses.replace(profile, **changes))
        return config.model_copy(update={"profiles": tuple(profiles)})


async def _file_text(gh: Any, repo_full_name: str, path: str, ref: str, missing: str,
                     where: dict[str, Any], long: str = LONG_INSTRUCTIONS) -> str:
    """The text of a file the config names; ConfigError at the naming key when unusable."""
    shown = code_span(path, 100)
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ConfigError(OUTSIDE.format(what=shown), **where)
    try:
        data = await _fetch(gh, repo_full_name, path, ref, shown)
        text = None if data is None else data.decode("utf-8-sig").strip()
    except _Unreadable as exc:
        raise ConfigError(str(exc), **where) from None
    except UnicodeDecodeError:
        raise ConfigError(NOT_UTF8_FILE.format(what=shown), **where) from None
    if text is None:
        raise ConfigError(missing.format(what=shown, ref=code_span(ref, 100)), **where)
    if len(text) > INSTRUCTIONS_LIMIT:
        raise ConfigError(long, **where)
    return text


async def _fetch(gh: Any, repo_full_name: str, path: str, ref: str, shown: str) -> bytes | None:
    """A file's bytes through the contents API; None when `ref` has nothing at `path`."""
    owner, _, repo = repo_full_name.partition("/")
    try:
        item = await gh.getitem(CONTENTS_URL, {"owner": owner, "repo": repo, "path": path,
                                               "ref": ref})
    except gidgethub.BadRequest as exc:
        if exc.status_code == 404:
            return None
        raise
    kind = "directory" if isinstance(item, list) else item.get("type")
    if kind != "file":
        raise _Unreadable(NOT_A_FILE.format(what=shown, kind=kind))
    if item.get("encoding") != "base64":
        # From 1 MB to 100 MB GitHub answers with `encoding: none` and no content.
        raise _Unreadable(TOO_LARGE.format(what=shown))
    return base64.b64decode(item.get("content") or "")
