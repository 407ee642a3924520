"""Find and mask secrets (tokens, keys, registered runtime values) in text."""

from __future__ import annotations

import base64
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable

# Each pattern names one kind of secret. A pattern with a group named `secret` masks only that
# group (the value of `Authorization: Bearer ...`, say), so the surrounding text stays readable.
# `_HINTS` holds lowercase substrings that must occur for a pattern to be worth running: a cheap
# `in` test that keeps redaction fast on the log hot path, where almost no line holds a secret.
_WORD_END = r"(?![A-Za-z0-9_])"
_B64URL = r"[A-Za-z0-9_-]"

SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    # GitHub's prefixed tokens: 36 characters of [A-Za-z0-9_] today (the last 6 a CRC32
    # checksum); GitHub asks integrators to accept up to 255 characters in all.
    "github_token": re.compile(r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9_]{36,251}" + _WORD_END),
    # Fine-grained personal access tokens: github_pat_ + 22 + "_" + 59 characters.
    "github_fine_grained_pat": re.compile(
        r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59,230}" + _WORD_END
    ),
    # PEM private keys (PKCS#1 RSA, SEC1 EC, DSA, OpenSSH, PKCS#8 and its encrypted form). A
    # block needs a real body (a base64 run of 40+ after optional RFC 1421 headers), so prose
    # that only names the header does not count. Without its END line (a truncated key) the
    # base64 that follows is masked. Escaped newlines (`\n` as two characters) count as
    # whitespace because keys show up JSON- or repr-escaped.
    "private_key": re.compile(
        r"-----BEGIN (?P<kind>(?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?)PRIVATE KEY-----"
        r"(?:\s|\\[rn])+"
        r"(?:[A-Za-z-]+:[^\r\n\\]*(?:\r?\n|\\r\\n|\\n)(?:\s|\\[rn])*)*"
        r"[A-Za-z0-9+/]{40}"
        r"(?:[\s\S]*?-----END (?P=kind)PRIVATE KEY-----|(?:[A-Za-z0-9+/=\s]|\\[rn])*)"
    ),
    # AWS access key ids: AKIA (long-term) or ASIA (temporary) + 16 base32 characters. The
    # example id from AWS's own documentation is left alone; it is everywhere in docs and tests.
    "aws_access_key_id": re.compile(
        r"(?<![A-Za-z0-9])(?!AKIAIOSFODNN7EXAMPLE)(?:AKIA|ASIA)[A-Z2-7]{16}(?![A-Za-z0-9])"
    ),
    # AWS secret access keys are 40 base64 characters with no prefix of their own, so only an
    # assignment to a name that says what it is counts (env, INI, YAML, JSON, STS responses).
    "aws_secret_access_key": re.compile(
        r"(?i:secret_?access_?key|aws_?secret_?key)[\"']?\s*[:=]\s*[\"']?"
        r"(?!wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY)"
        r"(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
    ),
    # Anthropic keys: sk-ant-api03-..., sk-ant-admin01-..., and Claude Code's OAuth tokens
    # (sk-ant-oat01-, refresh sk-ant-ort01-); about 95 url-safe characters after the kind.
    "anthropic_api_key": re.compile(
        r"(?<![A-Za-z0-9_-])sk-ant-(?:api|admin|oat|ort)\d{2}-" + _B64URL + r"{80,128}"
        r"(?![A-Za-z0-9_-])"
    ),
    # OpenAI keys: legacy sk-<20>T3BlbkFJ<20> and project/service-account/admin keys
    # (sk-proj-, sk-svcacct-, sk-admin-); all carry "T3BlbkFJ" (base64 of "OpenAI").
    "openai_api_key": re.compile(
        r"(?<![A-Za-z0-9_-])sk-" + _B64URL + r"{20,200}T3BlbkFJ" + _B64URL + r"{20,200}"
        r"(?![A-Za-z0-9_-])"
    ),
    # Slack tokens: xoxb- (bot), xoxp- (user), xoxa-/xoxr-/xoxs-/xoxo-, xoxe- (refresh and
    # configuration), xoxc- (web client): digit groups, then a random tail.
    "slack_token": re.compile(
        r"(?<![A-Za-z0-9])xox[abceoprs]-(?=[0-9A-Za-z-]{20,})\d+(?:-[0-9A-Za-z]+)+"
        r"(?![A-Za-z0-9-])"
    ),
    # JSON Web Tokens (also GitHub App JWTs): header and payload are base64url JSON objects,
    # so both start with "eyJ"; an unsigned token (empty signature) is not a credential.
    "jwt": re.compile(
        r"(?<![A-Za-z0-9_-])eyJ" + _B64URL + r"{8,}\.eyJ" + _B64URL + r"{8,}\." + _B64URL
        + r"{16,}(?![A-Za-z0-9_-])"
    ),
    # The credential of an Authorization header (raw, or as a dict entry in a repr). It must
    # contain a digit: placeholders such as `Bearer YOUR_TOKEN` and `token <token>` do not.
    "authorization": re.compile(
        r"(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?i:bearer|token|basic)\s+"
        r"(?P<secret>(?=[A-Za-z0-9._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{8,})"
    ),
}

_HINTS: dict[str, tuple[str, ...]] = {
    "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    "github_fine_grained_pat": ("github_pat_",),
    "private_key": ("private key-----",),
    "aws_access_key_id": ("akia", "asia"),
    "aws_secret_access_key": ("secret",),
    "anthropic_api_key": ("sk-ant-",),
    "openai_api_key": ("t3blbkfj",),
    "slack_token": ("xox",),
    "jwt": ("eyj",),
    "authorization": ("authorization",),
}

REGISTERED_NAME = "registered_secret"
# Shorter values would mask ordinary words all over the logs; real secrets are longer.
MIN_REGISTERED_LENGTH = 6
# Minted tokens matter for their lifetime (an hour); keep a bounded window of recent values
# (each takes two entries: itself and its base64 form), which keeps the scan cheap.
MAX_REGISTERED = 512

_registered: OrderedDict[str, None] = OrderedDict()
# One alternation of every registered value, built on first use after a change: a single
# regex scan costs a fraction of one `str.find` per value.
_registered_regex: re.Pattern[str] | None = None
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask this exact value (and its base64 form) wherever redact() or find_secrets() look."""
    global _registered_regex
    if not value or len(value) < MIN_REGISTERED_LENGTH:
        return
    encoded = base64.b64encode(value.encode()).decode()
    with _lock:
        for item in (value, encoded):
            _registered.pop(item, None)
            _registered[item] = None
        while len(_registered) > MAX_REGISTERED:
            _registered.popitem(last=False)
        _registered_regex = None


def clear_registered_secrets() -> None:
    """Forget every registered value (tests, and a process that rotates all its secrets)."""
    global _registered_regex
    with _lock:
        _registered.clear()
        _registered_regex = None


def _registered_pattern() -> re.Pattern[str] | None:
    global _registered_regex
    pattern = _registered_regex
    if pattern is not None or not _registered:
        return pattern
    with _lock:
        if _registered_regex is None and _registered:
            # Longest first: at one position the alternation takes the first branch that
            # matches, so a value that contains another is masked whole.
            values = sorted(_registered, key=len, reverse=True)
            _registered_regex = re.compile("|".join(map(re.escape, values)))
        return _registered_regex


def _looks_random(value: str) -> bool:
    """False for placeholders of the right shape (`ghp_xxxx...`, `AKIAAAAA...`)."""
    return len(set(value)) >= min(10, len(value) // 3)


def _spans(text: str) -> Iterable[tuple[str, int, int, int]]:
    """Every candidate match as (name, start, end, priority); lower priority wins ties."""
    lowered = text.lower()
    for priority, (name, pattern) in enumerate(SECRET_PATTERNS.items()):
        if not any(hint in lowered for hint in _HINTS[name]):
            continue
        group = "secret" if "secret" in pattern.groupindex else 0
        for match in pattern.finditer(text):
            if _looks_random(match.group(group)):
                yield name, match.start(group), match.end(group), priority
    registered = _registered_pattern()
    if registered is not None:
        for match in registered.finditer(text):
            yield REGISTERED_NAME, match.start(), match.end(), len(SECRET_PATTERNS)


def find_secrets(text: str) -> list[tuple[str, int, int]]:
    """Non-overlapping (name, start, end) of each secret in text, in order of position."""
    if not text:
        return []
    candidates = sorted(_spans(text), key=lambda s: (s[1], -(s[2] - s[1]), s[3]))
    found: list[tuple[str, int, int]] = []
    end_of_last = 0
    for name, start, end, _priority in candidates:
        if start >= end_of_last:
            found.append((name, start, end))
            end_of_last = end
    return found


def redact(text: str) -> str:
    """The text with each secret replaced by `[REDACTED:<name>]`."""
    secrets = find_secrets(text)
    if not secrets:
        return text
    parts: list[str] = []
    position = 0
    for name, start, end in secrets:
        parts.append(text[position:start])
        parts.append(f"[REDACTED:{name}]")
        position = end
    parts.append(text[position:])
    return "".join(parts)


def describe_error(exc: BaseException, *secrets: str | None, limit: int = 2000) -> str:
    """`Type: message` of an exception for a log or a run's error, with secrets masked."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[token]")
    return redact(text)[:limit]
