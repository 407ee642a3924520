"""Secret patterns: realistic fabricated samples are found and masked, near-misses are not."""

from __future__ import annotations

import base64
import json
import random
import string
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bot import redact as redact_module
from bot.redact import (
    SECRET_PATTERNS,
    clear_registered_secrets,
    find_secrets,
    redact,
    register_secret,
)

# Samples are assembled at run time from a seeded generator, so no token-shaped literal sits
# in the repository for secret scanners to trip over, and every run sees the same values.
_rng = random.Random(20240501)
ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "_-"
B32 = string.ascii_uppercase + "234567"
B64 = ALNUM + "+/"


def rand(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


@pytest.fixture(autouse=True)
def _no_registered_secrets():
    clear_registered_secrets()
    yield
    clear_registered_secrets()


def _pem(key, fmt, encryption=None) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, fmt, encryption or serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def pems() -> dict[str, str]:
    # A throwaway key only needs the PEM shape; 1024 bits keeps the fixture fast.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    fmt = serialization.PrivateFormat
    return {
        "rsa": _pem(rsa_key, fmt.TraditionalOpenSSL),
        "ec": _pem(ec_key, fmt.TraditionalOpenSSL),
        "openssh": _pem(ed_key, fmt.OpenSSH),
        "pkcs8": _pem(ec_key, fmt.PKCS8),
        "pkcs8_encrypted": _pem(ec_key, fmt.PKCS8, serialization.BestAvailableEncryption(b"pw")),
        "rsa_legacy_encrypted": _pem(
            rsa_key, fmt.TraditionalOpenSSL, serialization.BestAvailableEncryption(b"pw")
        ),
        "public": rsa_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    }


SAMPLES: list[tuple[str, str]] = [
    *[("github_token", f"gh{kind}_{rand(ALNUM, 36)}") for kind in "pousr"],
    ("github_token", "ghs_" + rand(ALNUM + "_", 90)),  # GitHub may lengthen tokens up to 255
    ("github_fine_grained_pat", f"github_pat_{rand(ALNUM, 22)}_{rand(ALNUM, 59)}"),
    ("aws_access_key_id", "AKIA" + rand(B32, 16)),
    ("aws_access_key_id", "ASIA" + rand(B32, 16)),
    ("anthropic_api_key", f"sk-ant-api03-{rand(B64URL, 93)}AA"),
    ("anthropic_api_key", f"sk-ant-admin01-{rand(B64URL, 93)}AA"),
    ("anthropic_api_key", f"sk-ant-oat01-{rand(B64URL, 93)}AA"),
    ("openai_api_key", f"sk-{rand(ALNUM, 20)}T3BlbkFJ{rand(ALNUM, 20)}"),
    ("openai_api_key", f"sk-proj-{rand(B64URL, 74)}T3BlbkFJ{rand(B64URL, 74)}"),
    ("openai_api_key", f"sk-svcacct-{rand(B64URL, 58)}T3BlbkFJ{rand(B64URL, 58)}"),
    ("slack_token", f"xoxb-{rand(string.digits, 12)}-{rand(string.digits, 13)}-{rand(ALNUM, 24)}"),
    ("slack_token", "xoxp-" + "-".join(rand(string.digits, 11) for _ in range(3))
     + "-" + rand("0123456789abcdef", 32)),
    ("jwt", jwt.encode({"iss": "12345", "iat": 1700000000}, rand(ALNUM, 32), algorithm="HS256")),
]


@pytest.mark.parametrize(("name", "secret"), SAMPLES, ids=[f"{n}-{i}" for i, (n, _) in
                                                          enumerate(SAMPLES)])
@pytest.mark.parametrize("template", ["{}", "token={} trailing", '{{"value": "{}"}}',
                                      "git clone https://x-access-token:{}@github.com/o/r"])
def test_sample_found_and_masked(name: str, secret: str, template: str) -> None:
    text = template.format(secret)
    start = text.index(secret)
    assert find_secrets(text) == [(name, start, start + len(secret))]
    masked = redact(text)
    assert secret not in masked
    assert masked == text.replace(secret, f"[REDACTED:{name}]")


@pytest.mark.parametrize("kind", ["rsa", "ec", "openssh", "pkcs8", "pkcs8_encrypted",
                                  "rsa_legacy_encrypted"])
def test_private_key_blocks(pems: dict[str, str], kind: str) -> None:
    pem = pems[kind]
    text = f"key:\n{pem}done"
    assert redact(text) == "key:\n[REDACTED:private_key]\ndone"
    # Keys show up escaped in JSON log lines and reprs; the escaped form is masked whole.
    escaped = json.dumps({"key": pem})
    assert redact(escaped) == '{"key": "[REDACTED:private_key]\\n"}'


def test_truncated_private_key_is_masked_to_the_end_of_its_body(pems: dict[str, str]) -> None:
    truncated = pems["rsa"][: len(pems["rsa"]) // 2]
    masked = redact(f"error parsing {truncated}")
    assert masked == "error parsing [REDACTED:private_key]"


@pytest.mark.parametrize(
    "assignment",
    [
        "aws_secret_access_key = {}",
        "AWS_SECRET_ACCESS_KEY={}",
        'export AWS_SECRET_ACCESS_KEY="{}"',
        '"SecretAccessKey": "{}"',
        "secretAccessKey: '{}'",
    ],
)
def test_aws_secret_key_assignments(assignment: str) -> None:
    secret = rand(B64, 40)
    text = assignment.format(secret)
    (found,) = find_secrets(text)
    assert found == ("aws_secret_access_key", text.index(secret), text.index(secret) + 40)
    assert redact(text) == assignment.format("[REDACTED:aws_secret_access_key]")


@pytest.mark.parametrize(
    ("header", "credential"),
    [
        ("Authorization: Bearer {}", rand(B64URL, 30) + "9"),
        ("authorization: token {}", rand(ALNUM, 40) + "1"),
        ("Authorization: Basic {}", base64.b64encode(b"user:hunter2-pass").decode()),
        ("{{'Authorization': 'Bearer {}'}}", rand(ALNUM, 24) + "7"),
    ],
)
def test_authorization_headers(header: str, credential: str) -> None:
    text = header.format(credential)
    assert redact(text) == header.format("[REDACTED:authorization]")


def test_authorization_header_carrying_a_known_token_names_the_token() -> None:
    token = "ghs_" + rand(ALNUM, 36)
    assert redact(f"Authorization: token {token}") == (
        "Authorization: token [REDACTED:github_token]"
    )


NEAR_MISSES = [
    "ghp_" + rand(ALNUM, 35),  # one character short
    "ghx_" + rand(ALNUM, 36),  # no such prefix
    "xghp_" + rand(ALNUM, 36),  # inside a longer word
    "ghp_" + "x" * 36,  # a placeholder of the right shape
    "github_pat_" + rand(ALNUM, 82),  # no separator after the 22 characters
    "github_pat_" + rand(ALNUM, 22) + "_" + rand(ALNUM, 20),  # too short
    "AKIA" + rand(B32, 15),  # one short
    "AKIA" + rand(B32, 17),  # one long
    "akia" + rand(B32, 16).lower(),  # ids are upper case
    "AKIA0189" + rand(B32, 12),  # 0, 1, 8, 9 are not base32
    "AKIAIOSFODNN7EXAMPLE",  # AWS's documentation example
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "aws_secret_access_key = " + rand(B64, 41),  # wrong length
    "value = " + rand(B64, 40),  # 40 base64 characters but nothing says what they are
    "aws_secret_access_key = YOUR_SECRET_ACCESS_KEY_GOES_RIGHT_HERE_OK",
    "sk-ant-api03-short",
    "sk-" + rand(ALNUM, 48),  # the OpenAI marker is missing
    "sk-proj-" + rand(ALNUM, 40),
    "xoxb-your-bot-token",
    "xoxb-123456",
    "SLACK_TOKEN=xoxb-${SLACK_BOT_TOKEN}",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjM0NSJ9.",  # unsigned: not a credential
    "eyJhbGciOiJIUzI1NiJ9 and nothing else",
    "Authorization: Bearer YOUR_TOKEN_HERE",
    "Authorization: token <token>",
    "Authorization: Bearer ${GITHUB_TOKEN}",
    "Set GITHUB_PRIVATE_KEY to the text that starts with -----BEGIN RSA PRIVATE KEY-----.",
    "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
    "see sk-ant-* and ghp_* prefixes in the docs",
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    "commit 4196919fb12cc4aa8ec0159a746c1e03b4ffa89c",
]


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_do_not_match(text: str) -> None:
    assert find_secrets(text) == []
    assert redact(text) == text


def test_public_key_and_certificate_blocks_are_not_secrets(pems: dict[str, str]) -> None:
    assert find_secrets(pems["public"]) == []
    cert = pems["public"].replace("PUBLIC KEY", "CERTIFICATE")
    assert find_secrets(cert) == []


def test_several_secrets_in_order_without_overlap(pems: dict[str, str]) -> None:
    gh = "ghp_" + rand(ALNUM, 36)
    aws = "AKIA" + rand(B32, 16)
    text = f"a {aws} b {pems['ec']} c Authorization: Bearer {gh} d"
    found = find_secrets(text)
    assert [name for name, _, _ in found] == ["aws_access_key_id", "private_key", "github_token"]
    assert all(a[2] <= b[1] for a, b in zip(found, found[1:], strict=False))
    masked = redact(text)
    assert masked.startswith("a [REDACTED:aws_access_key_id] b [REDACTED:private_key]")
    assert masked.endswith("c Authorization: Bearer [REDACTED:github_token] d")


def test_redact_is_idempotent() -> None:
    text = "t=ghu_" + rand(ALNUM, 36) + " k=AKIA" + rand(B32, 16)
    once = redact(text)
    assert redact(once) == once


def test_every_pattern_has_a_sample_and_hints() -> None:
    assert {name for name, _ in SAMPLES} | {"private_key", "aws_secret_access_key",
                                           "authorization"} == set(SECRET_PATTERNS)
    assert set(redact_module._HINTS) == set(SECRET_PATTERNS)


def test_registered_secret_is_masked_by_exact_value() -> None:
    webhook_secret = "It's a Secret to Everybody"
    assert redact(f"secret is {webhook_secret}!") == f"secret is {webhook_secret}!"
    register_secret(webhook_secret)
    assert redact(f"secret is {webhook_secret}!") == "secret is [REDACTED:registered_secret]!"
    text = f"{webhook_secret} twice {webhook_secret}"
    assert [name for name, _, _ in find_secrets(text)] == ["registered_secret"] * 2


def test_registered_secret_base64_form_is_masked() -> None:
    callback = rand(B64URL, 43)
    register_secret(callback)
    encoded = base64.b64encode(callback.encode()).decode()
    assert redact(f"data: {{github-token: {encoded}}}") == (
        "data: {github-token: [REDACTED:registered_secret]}"
    )


def test_registered_secret_containing_another_is_masked_whole() -> None:
    register_secret("abcdef")
    register_secret("abcdef-longer-value")
    assert redact("x abcdef-longer-value y abcdef") == (
        "x [REDACTED:registered_secret] y [REDACTED:registered_secret]"
    )


@pytest.mark.parametrize("value", [None, "", "short"])
def test_too_short_values_are_not_registered(value: str | None) -> None:
    register_secret(value)
    assert redact("a short word") == "a short word"


def test_registry_keeps_a_bounded_window_of_recent_values(monkeypatch) -> None:
    monkeypatch.setattr(redact_module, "MAX_REGISTERED", 4)
    values = [f"value-{i:04d}" for i in range(5)]
    for value in values:
        register_secret(value)
    # Each value takes two slots (itself and its base64 form): the oldest ones fall out.
    assert redact(values[0]) == values[0]
    assert redact(values[-1]) == "[REDACTED:registered_secret]"


def test_pathological_input_stays_linear() -> None:
    # Long runs that almost match must not make the patterns backtrack for seconds.
    blobs = [
        "-----BEGIN RSA PRIVATE KEY-----\n" + "A" * 200_000,
        "authorization: bearer " + "a" * 200_000,
        "ghp_" + "a1" * 100_000,
        "sk-" + "a" * 200_000,
        "xoxb-1-" + "1-" * 50_000,
        "eyJ" + "a" * 100_000 + ".eyJ" + "b" * 100_000,
    ]
    started = time.perf_counter()
    for blob in blobs:
        redact(blob)
    assert time.perf_counter() - started < 2.0
