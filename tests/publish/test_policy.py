"""Policy on sandbox results: each rule refuses what it must, with its rule id and path."""

from __future__ import annotations

import base64
import random
import string

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.publish.policy import RULES, Limits, Violation, check, explain
from bot.redact import clear_registered_secrets, register_secret
from bot.runs.callbacks import Result

# Token-shaped values are built at run time from a seeded generator: no literal for secret
# scanners to trip over, and the same values on every run.
_rng = random.Random(4)
ALNUM = string.ascii_letters + string.digits
GITHUB_TOKEN = "ghp_" + "".join(_rng.choice(ALNUM) for _ in range(36))
AWS_KEY_ID = "AKIA" + "".join(_rng.choice(string.ascii_uppercase + "234567") for _ in range(16))
LIMITS = Limits(max_changed_files=10, max_result_bytes=1000)


@pytest.fixture(scope="module")
def pem() -> str:
    """An encrypted legacy PEM: its `Proc-Type` and `DEK-Info` lines come before the body."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - a sample
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.BestAvailableEncryption(b"pw")).decode()


@pytest.fixture(autouse=True)
def _no_registered_secrets():
    clear_registered_secrets()
    yield
    clear_registered_secrets()


def add(path: str, content: bytes | str = b"hello\n", mode: str = "100644") -> dict[str, str]:
    data = content.encode() if isinstance(content, str) else content
    return {"path": path, "mode": mode, "content_b64": base64.b64encode(data).decode()}


def delete(path: str) -> dict[str, object]:
    return {"path": path, "deleted": True}


def result(*changes: dict[str, object], status: str = "succeeded", **fields: str) -> Result:
    return Result.model_validate({"status": status, "changes": list(changes), **fields})


def unchecked(*changes: dict[str, object]) -> Result:
    """A result whose changes skipped the schema (a raw dict slipping through)."""
    return Result.model_construct(status="succeeded", summary="", commit_message="",
                                  changes=list(changes), stats={})


def found(res: Result, limits: Limits = LIMITS) -> list[tuple[str, str | None]]:
    return [(v.rule, v.path) for v in check(res, limits)]


def test_a_clean_result_with_three_files_passes():
    res = result(add("src/app.py", "print('hi')\n"), add("bin/run", "#!/bin/sh\n", "100755"),
                 delete("old.txt"), commit_message="Add app", summary="Added the app.")
    assert check(res, LIMITS) == []


def test_no_changes_with_no_files_passes():
    assert check(result(status="no_changes", summary="Nothing to do."), LIMITS) == []


def test_file_count_counts_deletions_too():
    limits = Limits(max_changed_files=3, max_result_bytes=1000)
    assert check(result(add("a"), add("b"), delete("c")), limits) == []
    violations = check(result(add("a"), add("b"), delete("c"), delete("d")), limits)
    assert violations == [Violation("too_many_files", None,
                                    "4 changed files, over the limit of 3")]


def test_size_is_the_total_of_decoded_content():
    limits = Limits(max_changed_files=10, max_result_bytes=100)
    # 100 decoded bytes is 136 characters of base64: the limit applies to the decoded size.
    assert check(result(add("a", b"x" * 60), add("b", b"y" * 40), delete("c")), limits) == []
    violations = check(result(add("a", b"x" * 60), add("b", b"y" * 41)), limits)
    assert [(v.rule, v.path) for v in violations] == [("too_large", None)]
    assert "101 bytes" in violations[0].detail and "100" in violations[0].detail


@pytest.mark.parametrize("change", [
    add(".github/workflows/ci.yml"),
    add(".github/workflows/nested/deeper/job.yaml"),
    add(".GitHub/Workflows/CI.yml"),  # a case-insensitive checkout puts it in the same place
    delete(".github/workflows/ci.yml"),
    add(".github/workflows"),  # a file that would replace the protected directory
    add("./.github/workflows/ci.yml"),  # malformed paths cannot slip past a pattern
    add(".github//workflows/ci.yml"),
])
def test_default_protected_paths_refuse_workflow_changes(change):
    violations = check(result(change), LIMITS)
    protected = [v for v in violations if v.rule == "protected_path"]
    assert [(v.path, v.detail) for v in protected] == [
        (change["path"], "matches `.github/workflows/**`")]


@pytest.mark.parametrize("path", [
    ".github/dependabot.yml", ".github/workflowsx/ci.yml", "docs/.github/workflows/ci.yml",
    "github/workflows/ci.yml",
])
def test_default_protected_paths_leave_other_paths_alone(path):
    assert check(result(add(path)), LIMITS) == []


def test_a_rename_into_a_protected_path_is_refused():
    res = result(delete("scripts/deploy.yml"), add(".github/workflows/deploy.yml"))
    assert found(res) == [("protected_path", ".github/workflows/deploy.yml")]


def test_a_rename_out_of_a_protected_path_is_refused():
    res = result(delete(".github/workflows/deploy.yml"), add("scripts/deploy.yml"))
    assert found(res) == [("protected_path", ".github/workflows/deploy.yml")]


@pytest.mark.parametrize(("pattern", "path", "protected"), [
    ("*.pem", "key.pem", True),
    ("*.pem", "certs/key.pem", False),  # `*` stays within one segment
    ("**/*.pem", "certs/deep/key.pem", True),  # `**` is any depth
    ("**/*.pem", "key.pem", True),  # ... zero segments included
    ("**/*.pem", ".hidden/key.pem", True),  # dot directories are not special
    ("*", ".env", True),  # nor are dotfiles
    ("secrets/?.txt", "secrets/a.txt", True),
    ("secrets/?.txt", "secrets/ab.txt", False),
    ("secrets/?", "secrets/a/b.txt", True),  # a matching directory protects what is below
    ("docs", "docs/guide/intro.md", True),  # a directory protects everything below it
    ("docs/", "docs/intro.md", True),
    ("/Makefile", "Makefile", True),  # anchored at the root; the leading slash is optional
    ("Makefile", "sub/Makefile", False),
    ("[ab].txt", "b.txt", True),
    ("[ab].txt", "c.txt", False),
    ("vendor/**", "vendors/x", False),
])
def test_protected_path_glob_semantics(pattern, path, protected):
    limits = Limits(10, 1000, protected_paths=(pattern,))
    violations = check(result(add(path)), limits)
    expected = [("protected_path", path)] if protected else []
    assert [(v.rule, v.path) for v in violations] == expected
    if protected:
        assert violations[0].detail == f"matches `{pattern}`"


def test_only_the_first_matching_pattern_is_reported():
    limits = Limits(10, 1000, protected_paths=("", "docs/*.md", "docs/**"))
    violations = check(result(add("docs/x.md"), add("docs/y.txt")), limits)
    assert [(v.path, v.detail) for v in violations] == [
        ("docs/x.md", "matches `docs/*.md`"), ("docs/y.txt", "matches `docs/**`")]


def test_violation_text_names_rule_path_and_pattern():
    (violation,) = check(result(add(".github/workflows/ci.yml")), LIMITS)
    assert str(violation) == (
        "protected_path: .github/workflows/ci.yml matches `.github/workflows/**`")


@pytest.mark.parametrize("path", [
    ".git/config", "sub/.git/hooks/pre-commit", ".GIT/HEAD", ".Git/config",
    ".git./config",  # NTFS drops trailing dots
    ".git /config",  # ... and trailing spaces
    "git~1/config",  # NTFS short name of .git
    ".g\u200cit/config",  # HFS+ ignores zero-width joiners
    "a/.git",
])
def test_git_directory_paths_are_refused(path):
    assert ("git_path", path) in found(result(add(path)))
    assert ("git_path", path) in found(result(delete(path)))


@pytest.mark.parametrize("path", [".gitignore", ".github/CODEOWNERS", "my.git/x", ".gitkeep",
                                  "docs/git~2.md"])
def test_names_that_only_look_like_git_pass(path):
    assert check(result(add(path)), LIMITS) == []


@pytest.mark.parametrize(("path", "rule", "detail"), [
    ("/etc/passwd", "escaping_path", "is absolute"),
    ("../outside", "escaping_path", "has a `..` segment"),
    ("a/../../outside", "escaping_path", "has a `..` segment"),
    ("a/..", "escaping_path", "has a `..` segment"),
    ("a//b", "bad_path", "has an empty segment"),
    ("./a", "bad_path", "has a `.` segment"),
    ("a/./b", "bad_path", "has a `.` segment"),
    ("a\\b", "bad_path", "contains a backslash"),
    ("a\x00b", "bad_path", "contains the control character 0x00"),
    ("a\nb", "bad_path", "contains the control character 0x0a"),
    ("a\x7fb", "bad_path", "contains the control character 0x7f"),
    ("a/", "bad_path", "ends with a slash"),
    ("a\ud800b", "bad_path", "is not valid UTF-8"),
])
def test_paths_must_be_plain_relative_paths(path, rule, detail):
    res = unchecked(add(path)) if "\ud800" in path else result(add(path))
    violations = check(res, LIMITS)
    assert Violation(rule, path, detail) in violations
    assert {v.path for v in violations} == {path}


def test_an_empty_path_that_skipped_the_schema_is_refused():
    assert found(unchecked(add(""), {"mode": "100644", "content_b64": ""})) == [
        ("bad_path", ""), ("duplicate_path", ""), ("bad_path", "")]


def test_one_violation_per_rule_and_path():
    violations = check(result(add("/a//./b")), LIMITS)
    assert [(v.rule, v.detail) for v in violations] == [
        ("bad_path", "has an empty segment"), ("escaping_path", "is absolute")]


@pytest.mark.parametrize("change", [
    add(".gitmodules", '[submodule "x"]\n\tpath = x\n\turl = https://example.com/x\n'),
    delete(".gitmodules"),
    add("vendor/.gitmodules"),
    add(".GITMODULES"),
])
def test_gitmodules_changes_are_refused(change):
    assert found(result(change)) == [("submodule", change["path"])]


def test_a_gitlink_that_slipped_past_the_schema_is_refused():
    gitlink = {"path": "vendor/lib", "mode": "160000", "content_b64": ""}
    violations = check(unchecked(gitlink), LIMITS)
    assert violations == [Violation("submodule", "vendor/lib",
                                    "is a submodule (gitlink, mode 160000)")]


def test_other_modes_and_bad_base64_that_slipped_past_the_schema_are_refused():
    tree = {"path": "dir", "mode": "040000", "content_b64": ""}
    garbage = {"path": "file", "mode": "100644", "content_b64": "not base64!"}
    assert found(unchecked(tree, garbage)) == [("bad_mode", "dir"), ("bad_content", "file")]


@pytest.mark.parametrize(("path", "target"), [
    ("link", "../../etc/passwd"),
    ("link", ".."),
    ("a/link", "../../secret"),
    ("a/b/link", "c/../../../../x"),
    ("link", "..\\..\\windows"),  # a Windows checkout splits on backslashes
])
def test_symlinks_that_escape_the_repository_are_refused(path, target):
    violations = check(result(add(path, target, "120000")), LIMITS)
    assert [(v.rule, v.path) for v in violations] == [("escaping_symlink", path)]
    assert f"`{target}`" in violations[0].detail


@pytest.mark.parametrize("target", ["/etc/passwd", "C:/Windows", "\\\\server\\share"])
def test_symlinks_to_absolute_paths_are_refused(target):
    (violation,) = check(result(add("link", target, "120000")), LIMITS)
    assert (violation.rule, violation.path) == ("escaping_symlink", "link")
    assert "absolute" in violation.detail


@pytest.mark.parametrize(("path", "target"), [
    ("link", "docs/readme.md"), ("a/b/link", "../../top.txt"), ("a/link", "./b/../c"),
])
def test_symlinks_inside_the_repository_pass(path, target):
    assert check(result(add(path, target, "120000")), LIMITS) == []


@pytest.mark.parametrize(("target", "rule"), [
    (".git/hooks", "git_path"), ("sub/.GIT/config", "git_path"), ("", "bad_symlink"),
    ("a\nb", "bad_symlink"), (b"\xff\xfe", "bad_symlink"),
])
def test_symlinks_into_git_or_with_odd_targets_are_refused(target, rule):
    assert found(result(add("link", target, "120000"))) == [(rule, "link")]


def test_the_same_path_twice_is_refused_once():
    res = result(add("a.txt"), delete("a.txt"), add("a.txt"), add("b.txt"))
    violations = check(res, LIMITS)
    assert violations == [Violation("duplicate_path", "a.txt", "appears 3 times")]


def test_a_file_and_a_path_below_it_conflict():
    assert found(result(add("a"), add("a/b/c"))) == [("path_conflict", "a/b/c")]
    # Replacing a file with a directory, or a directory with a file, is fine.
    assert check(result(delete("a"), add("a/b")), LIMITS) == []
    assert check(result(delete("a/b"), delete("a/c/d"), add("a")), LIMITS) == []


def test_a_secret_in_content_is_reported_by_kind_and_line_never_by_value():
    content = f"import os\n\nTOKEN = '{GITHUB_TOKEN}'\n"
    violations = check(result(add("src/settings.py", content)), LIMITS)
    assert violations == [Violation("secret", "src/settings.py", "holds a github_token on line 3")]
    assert GITHUB_TOKEN not in str(violations) + explain(violations)


def test_every_line_of_a_repeated_secret_kind_is_counted():
    content = "".join(f"key{i} = {AWS_KEY_ID}\n" if i in (1, 4, 6, 7, 8, 9, 10) else "x\n"
                      for i in range(1, 12))
    violations = check(result(add("creds.ini", content)), LIMITS)
    assert [(v.rule, v.path, v.detail) for v in violations] == [
        ("secret", "creds.ini", "holds an aws_access_key_id on lines 1, 4, 6, 7, 8 and 2 more")]


def test_a_private_key_in_a_binary_file_is_found_by_byte_offset(pem):
    data = b"\x00\x01\x02binary" + pem.encode() + b"\xff\x00"
    violations = check(result(add("assets/blob.bin", data)), LIMITS)
    assert violations == [Violation("secret", "assets/blob.bin", "holds a private_key at byte 9")]


def test_secrets_in_the_commit_message_and_summary_name_the_field():
    res = result(add("a.txt"), commit_message=f"Fix\n\nuses {GITHUB_TOKEN}",
                 summary=f"I set AWS to {AWS_KEY_ID}")
    violations = check(res, LIMITS)
    assert violations == [
        Violation("secret", None, "the commit message holds a github_token on line 3"),
        Violation("secret", None, "the summary holds an aws_access_key_id on line 1"),
    ]
    assert GITHUB_TOKEN not in explain(violations)


def test_a_secret_in_a_path_is_masked_in_the_violation():
    violations = check(result(add(f"leak/{GITHUB_TOKEN}.txt")), LIMITS)
    assert violations == [Violation("secret", "leak/[REDACTED:github_token].txt",
                                    "holds a github_token in its name")]


def test_a_registered_runtime_secret_is_found_in_content():
    value = "".join(_rng.choice(ALNUM) for _ in range(40))
    register_secret(value)
    violations = check(result(add("notes.md", f"the token is {value}\n")), LIMITS)
    assert violations == [Violation("secret", "notes.md", "holds a registered_secret on line 1")]


def test_secrets_in_large_files_are_found_once_at_their_line(pem):
    limits = Limits(10, 10 * 1024 * 1024)
    # Over 2 MiB, so the text is scanned in 64 KiB pieces with an overlap.
    lines = [f"line {i} of ordinary text that mentions no secret at all\n" for i in range(40_000)]
    offsets, total = [], 0
    for line in lines:
        offsets.append(total)
        total += len(line)
    at_boundary = next(i for i, offset in enumerate(offsets) if offset > 64 * 1024 - 100) - 1
    just_after = at_boundary + 40  # inside the first piece's overlap: must be reported once
    for index in (0, at_boundary - 5, just_after, 20_000, 39_999):
        lines[index] = f"token = {GITHUB_TOKEN}\n"
    # The key's header line holds the boundary, so the first piece alone sees only the header.
    padding = 64 * 1024 - 10 - offsets[at_boundary]
    lines[at_boundary - 1] = "#" * padding + lines[at_boundary - 1]
    lines.insert(at_boundary, pem)
    violations = check(result(add("big.txt", "".join(lines))), limits)
    extra = pem.count("\n") - 1
    token_lines = [1, at_boundary - 4, just_after + 2 + extra, 20_002 + extra, 40_001 + extra]
    assert [(v.rule, v.path) for v in violations] == [("secret", "big.txt")] * 2
    assert sorted(v.detail for v in violations) == [
        f"holds a github_token on lines {', '.join(map(str, token_lines))}",
        f"holds a private_key on line {at_boundary + 1}",
    ]


def test_secret_like_placeholders_pass():
    content = "TOKEN = 'ghp_" + "x" * 36 + "'\nexample = AKIAIOSFODNN7EXAMPLE\n"
    assert check(result(add("README.md", content)), LIMITS) == []


def test_violations_come_in_a_stable_order():
    res = result(add(".github/workflows/ci.yml", f"t: {GITHUB_TOKEN}\n"), add("../x"),
                 add("a"), add("a"), commit_message=GITHUB_TOKEN)
    limits = Limits(max_changed_files=3, max_result_bytes=10)
    assert found(res, limits) == [
        ("too_many_files", None), ("too_large", None),
        ("protected_path", ".github/workflows/ci.yml"), ("secret", ".github/workflows/ci.yml"),
        ("escaping_path", "../x"), ("duplicate_path", "a"), ("secret", None)]
    assert found(res, limits) == found(res, limits)
    assert {rule for rule, _ in found(res, limits)} <= set(RULES)


def test_explain_lists_rule_and_path_up_to_the_limit():
    violations = check(result(*(add(f".git/hook{i}") for i in range(5))), LIMITS)
    text = explain(violations, limit=3)
    assert text.splitlines() == [
        "The agent's changes were refused by policy (5 problems):",
        "",
        "- **git_path** `.git/hook0`: has a `.git` segment (git's own)",
        "- **git_path** `.git/hook1`: has a `.git` segment (git's own)",
        "- **git_path** `.git/hook2`: has a `.git` segment (git's own)",
        "- and 2 more",
    ]
    assert explain([]) == ""
    assert explain(violations[:1]).startswith(
        "The agent's changes were refused by policy (1 problem):")


def test_explain_keeps_odd_paths_readable_and_short():
    long_path = "d/" * 2000 + ".git"
    violations = [Violation("bad_path", "a`b\nc", "x"), Violation("git_path", long_path, "y"),
                  Violation("too_large", None, "z")]
    text = explain(violations)
    assert "- **bad_path** ``a`b\\x0ac``: x" in text
    assert "- **too_large**: z" in text
    assert len(text) < 600  # long paths are shortened, so 20 of them fit any GitHub limit
