"""What a sandbox's result may contain: limits, paths, submodules and secrets (pure checks)."""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from wcmatch import glob

from bot.redact import find_secrets, redact

if TYPE_CHECKING:
    from bot.runs.callbacks import Result

# Every rule id check() reports; stable: reports, tests and docs name them.
RULES = (
    "too_many_files", "too_large", "bad_path", "escaping_path", "git_path", "submodule",
    "protected_path", "bad_mode", "bad_content", "bad_symlink", "escaping_symlink",
    "duplicate_path", "path_conflict", "secret",
)

DEFAULT_PROTECTED_PATHS = (".github/workflows/**",)
FILE_MODES = frozenset({"100644", "100755", "120000"})
SYMLINK_MODE = "120000"
GITLINK_MODE = "160000"

# User-facing text (check run summary, status comment).
EXPLAIN_INTRO = "The agent's changes were refused by policy ({count} {noun}):"
EXPLAIN_MORE = "- and {count} more"
FIELD_NAMES = {"commit_message": "the commit message", "summary": "the summary"}

# Glob semantics: see Limits. IGNORECASE because a case-insensitive checkout (macOS, Windows)
# puts `.GitHub/Workflows/x.yml` in the protected directory: refusing it is the safe side.
_GLOB_FLAGS = glob.GLOBSTAR | glob.DOTGLOB | glob.FORCEUNIX | glob.IGNORECASE
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone one cannot be written as UTF-8
# Code points HFS+ ignores in names, so `.g\u200cit` is `.git` there (git's own list).
_HFS_IGNORABLE = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")
_GIT_NAMES = re.compile(r"\.git|git~1")
_GITMODULES_NAMES = re.compile(r"\.gitmodules|gitmod~[1-4]|gi7eba~[1-9]")
# Git's own heuristic: a NUL in the first 8000 bytes makes a file binary.
_BINARY_SNIFF = 8000
# Large texts are scanned in line-aligned pieces (with an overlap for secrets that run past a
# piece's end): redact's cheap hint test then skips most pieces, where one hint anywhere in a
# 20 MiB file would otherwise run that pattern over all of it.
_PIECE = 64 * 1024
_OVERLAP = 16 * 1024
_MAX_SHOWN = 200
_MAX_LINES_SHOWN = 5


@dataclass(frozen=True)
class Limits:
    """The operator's limits, already capped, and the repository's protected path globs.

    `protected_paths` are globs anchored at the repository root, matched case-insensitively
    (wcmatch with GLOBSTAR and DOTGLOB): `**` is any number of whole segments, zero included;
    `*` and `?` stay within one segment; `[...]` is a class; dotfiles are not special (`*`
    matches `.env`); a leading `/` is ignored. A pattern that matches a directory protects
    everything below it, so `docs`, `docs/` and `docs/**` all protect `docs/a/b.md`, and a file
    that would replace a protected directory is refused too. Adding, changing and deleting a
    protected path are all refused; empty and `.` segments of a path are skipped first.
    """

    max_changed_files: int
    max_result_bytes: int  # total decoded bytes of added or changed files
    protected_paths: tuple[str, ...] = DEFAULT_PROTECTED_PATHS


@dataclass(frozen=True)
class Violation:
    """One broken rule; `detail` names the problem and never holds a secret value."""

    rule: str
    path: str | None  # the offending path, secrets in it masked; None for whole-result rules
    detail: str

    def __str__(self) -> str:
        if not self.path:
            return f"{self.rule}: {self.detail}"
        return f"{self.rule}: {_shown(self.path)} {self.detail}"


def check(result: Result, limits: Limits) -> list[Violation]:
    """Every rule the result breaks, in a stable order (empty list = publishable).

    Order: the file-count and size limits, then each change in the changeset's order (its path
    rules, its mode and content, duplicates and file/directory conflicts, secrets in it), then
    secrets in the commit message and the summary. The status is not judged here.
    """
    changes = [_change(item) for item in result.changes]
    violations: list[Violation] = []
    if len(changes) > limits.max_changed_files:
        violations.append(Violation("too_many_files", None, (
            f"{len(changes)} changed files, over the limit of {limits.max_changed_files}")))
    total = sum(len(change.data) for change in changes if change.data is not None)
    if total > limits.max_result_bytes:
        violations.append(Violation("too_large", None, (
            f"the changes add up to {total:,} bytes, over the limit of "
            f"{limits.max_result_bytes:,}")))
    matchers = _compile(limits.protected_paths)
    counts = Counter(change.path for change in changes)
    added = {change.path for change in changes if not change.deleted}
    seen: set[str] = set()
    for change in changes:
        shown = redact(change.path)
        found = [*_path_rules(change.path), *_protected(change.path, matchers),
                 *_content_rules(change)]
        if counts[change.path] > 1 and change.path not in seen:
            found.append(("duplicate_path", f"appears {counts[change.path]} times"))
        seen.add(change.path)
        if not change.deleted:
            found += _conflicts(change.path, added)
        if shown != change.path:
            kinds = " and ".join(_a(name) for name in _secret_lines(change.path))
            found.append(("secret", f"holds {kinds} in its name"))
        if change.data is not None:
            found += _secrets_in_content(change.data)
        violations.extend(Violation(rule, shown, detail) for rule, detail in found)
    for field, label in FIELD_NAMES.items():
        text: str = getattr(result, field, "") or ""
        for name, lines in _secret_lines(text).items():
            violations.append(Violation("secret", None, f"{label} holds {_a(name)} "
                                                          f"{_lines(lines)}"))
    return violations


def explain(violations: list[Violation], limit: int = 20) -> str:
    """Markdown for the run's check run and status comment: each rule and path, the first
    `limit` of them, then "and N more"; "" when there is nothing to explain."""
    if not violations:
        return ""
    noun = "problem" if len(violations) == 1 else "problems"
    lines = [EXPLAIN_INTRO.format(count=len(violations), noun=noun), ""]
    for violation in violations[:limit]:
        where = f" {_code(_shown(violation.path))}" if violation.path else ""
        lines.append(f"- **{violation.rule}**{where}: {violation.detail}")
    if len(violations) > limit:
        lines.append(EXPLAIN_MORE.format(count=len(violations) - limit))
    return "\n".join(lines)


def _protected(path: str, matchers: tuple[tuple[str, glob.WcMatcher[str]], ...]
               ) -> Iterator[tuple[str, str]]:
    """The first pattern that protects the path or a directory above it (see Limits)."""
    segments = [s for s in path.split("/") if s not in ("", ".")]
    candidates = []
    for end in range(1, len(segments) + 1):
        prefix = "/".join(segments[:end])
        candidates += [prefix, prefix + "/"]
    for pattern, matcher in matchers:
        if any(matcher.match(candidate) for candidate in candidates):
            yield "protected_path", f"matches {_code(_shown(pattern))}"
            return


@functools.lru_cache(maxsize=256)
def _compile(patterns: tuple[str, ...]) -> tuple[tuple[str, glob.WcMatcher[str]], ...]:
    compiled = []
    for pattern in patterns:
        cleaned = pattern.strip().lstrip("/")
        if cleaned:
            compiled.append((pattern, glob.compile(cleaned, flags=_GLOB_FLAGS)))
    return tuple(compiled)


class _Change(NamedTuple):
    path: str
    deleted: bool
    mode: str | None
    data: bytes | None  # decoded content; None for a deletion or content that is not base64


def _change(item: object) -> _Change:
    """One entry of the changeset, also when a raw dict slipped past the schema."""
    keys = ("path", "deleted", "mode", "content_b64")
    raw = item if isinstance(item, dict) else {k: getattr(item, k, None) for k in keys}
    path, deleted, content = raw.get("path"), raw.get("deleted") is True, raw.get("content_b64")
    data = None
    if not deleted and isinstance(content, str):
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            pass
    return _Change(path if isinstance(path, str) else "", deleted,
                   None if deleted else str(raw.get("mode")), data)


def _path_rules(path: str) -> Iterator[tuple[str, str]]:
    """Path problems as (rule, detail): the first one of each rule, in rule order."""
    segments = path.split("/")
    control = _CONTROL.search(path)
    names = [_as_case_insensitive_fs(segment) for segment in segments]
    dotgit = next((s for s, n in zip(segments, names, strict=True) if _GIT_NAMES.fullmatch(n)), "")
    checks = [
        ("bad_path", not path, "is empty"),
        ("bad_path", _SURROGATE.search(path) is not None, "is not valid UTF-8"),
        ("bad_path", control is not None,
         f"contains the control character {ord(control[0]) if control else 0:#04x}"),
        ("bad_path", "\\" in path, "contains a backslash"),
        ("bad_path", path.endswith("/"), "ends with a slash"),
        ("bad_path", "" in segments[1:-1], "has an empty segment"),
        ("bad_path", "." in segments, "has a `.` segment"),
        ("escaping_path", path.startswith("/"), "is absolute"),
        ("escaping_path", ".." in segments, "has a `..` segment"),
        ("git_path", bool(dotgit), f"has a {_code(_shown(dotgit))} segment (git's own)"),
        ("submodule", any(_GITMODULES_NAMES.fullmatch(n) for n in names),
         "changes `.gitmodules` (submodules)"),
    ]
    seen: set[str] = set()
    for rule, broken, detail in checks:
        if broken and rule not in seen:
            seen.add(rule)
            yield rule, detail


def _as_case_insensitive_fs(segment: str) -> str:
    """The name NTFS or HFS+ would see: ignorables dropped, trailing dots/spaces cut, folded."""
    return _HFS_IGNORABLE.sub("", segment).rstrip(" .").casefold()


def _content_rules(change: _Change) -> Iterator[tuple[str, str]]:
    if change.deleted:
        return
    if change.mode == GITLINK_MODE:
        yield "submodule", "is a submodule (gitlink, mode 160000)"
        return
    if change.mode not in FILE_MODES:
        yield "bad_mode", f"has mode {_code(_shown(str(change.mode)))}, not a file mode"
        return
    if change.data is None:
        yield "bad_content", "has content that is not valid base64"
    elif change.mode == SYMLINK_MODE:
        yield from _symlink_rules(change.path, change.data)


def _symlink_rules(path: str, data: bytes) -> Iterator[tuple[str, str]]:
    """A symlink must point inside the repository, judged from its own directory (lexically)."""
    try:
        target = data.decode("utf-8")
    except UnicodeDecodeError:
        yield "bad_symlink", "has a target that is not UTF-8 text"
        return
    if not target or _CONTROL.search(target):
        yield "bad_symlink", "has an empty target or one with control characters"
        return
    shown = _code(_shown(target))
    # Backslashes count as separators: a Windows checkout reads them so.
    parts = re.split(r"[/\\]", target)
    if target.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", target):
        yield "escaping_symlink", f"points to the absolute path {shown}"
    else:
        depth = path.count("/")
        for part in parts:
            depth += -1 if part == ".." else 0 if part in ("", ".") else 1
            if depth < 0:
                yield "escaping_symlink", f"points outside the repository ({shown})"
                break
    if any(_GIT_NAMES.fullmatch(_as_case_insensitive_fs(part)) for part in parts):
        yield "git_path", f"points into git's own directory ({shown})"


def _conflicts(path: str, added: set[str]) -> Iterator[tuple[str, str]]:
    segments = path.split("/")
    for end in range(1, len(segments)):
        parent = "/".join(segments[:end])
        if parent in added:
            yield "path_conflict", f"is under {_code(_shown(parent))}, which is added as a file"
            return


def _secrets_in_content(data: bytes) -> Iterator[tuple[str, str]]:
    # Binary files can still hold a PEM key or a token; latin-1 keeps every byte (and offsets).
    if b"\0" in data[:_BINARY_SNIFF]:
        for name, start in _find_secrets(data.decode("latin-1")):
            yield "secret", f"holds {_a(name)} at byte {start}"
        return
    text = data.decode("utf-8", errors="replace")
    for name, lines in _secret_lines(text).items():
        yield "secret", f"holds {_a(name)} {_lines(lines)}"


def _secret_lines(text: str) -> dict[str, list[int]]:
    """Line numbers (1-based) of each kind of secret in the text, counted in one pass."""
    found: dict[str, list[int]] = {}
    line, position = 1, 0
    for name, start in _find_secrets(text):
        line += text.count("\n", position, start)
        position = start
        found.setdefault(name, []).append(line)
    return found


def _find_secrets(text: str) -> Iterator[tuple[str, int]]:
    """(name, start) of each secret, in order; find_secrets() over pieces of a large text."""
    start = 0
    while start < len(text):
        end = _cut(text, start + _PIECE)
        for name, found, _end in find_secrets(text[start:_cut(text, end + _OVERLAP)]):
            if found < end - start:
                yield name, start + found
        start = end


def _cut(text: str, at: int) -> int:
    """A piece boundary at or after `at`: just past a newline, so no token is split."""
    if at >= len(text):
        return len(text)
    newline = text.find("\n", at, at + _PIECE)
    return newline + 1 if newline != -1 else at


def _lines(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:_MAX_LINES_SHOWN])
    more = f" and {len(lines) - _MAX_LINES_SHOWN} more" if len(lines) > _MAX_LINES_SHOWN else ""
    return f"on line{'s' if len(lines) > 1 else ''} {shown}{more}"


def _a(name: str) -> str:
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _shown(text: str) -> str:
    """Text safe to show: secrets masked, control characters escaped, long text shortened."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", redact(text))
    if len(text) > _MAX_SHOWN:
        half = _MAX_SHOWN // 2
        text = f"{text[:half]}…{text[-half:]}"
    return text


def _code(text: str) -> str:
    """A Markdown code span that holds any text, backticks included."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
