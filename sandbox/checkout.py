"""Checkout of the base commit, with the token sent as an HTTP header that only git sees."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from sandbox.procs import run_streaming

CHECKOUT_TIMEOUT_SECONDS = 600
# The gateway restarts (a deploy, a crash) while a run starts: a fetch it could not serve is
# tried again, waiting this long and then twice as long each time, at most the cap.
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 15.0
# What git says when the server was away or briefly unable, rather than refusing the fetch.
_TRANSIENT = ("returned error: 502", "returned error: 503", "returned error: 504",
              "failed to connect", "couldn't connect", "connection refused",
              "connection reset", "empty reply from server", "timed out",
              "recv failure", "unexpected disconnect", "the remote end hung up")
# What git needs from the runner's environment; everything else (GIT_TRACE*, proxies set for
# the agent, GIT_CONFIG_* of the image) stays out of the calls that carry the token.
_GIT_ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE",
                 "SSL_CERT_DIR", "GIT_SSL_CAINFO", "HTTPS_PROXY", "https_proxy", "NO_PROXY",
                 "no_proxy")
# Flags that keep a repository's own config from running programs in our git calls.
SAFE_GIT = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
            "-c", "credential.helper=", "-c", "protocol.file.allow=never")


def safe_git(workspace: Path) -> list[str]:
    """`git` plus options that keep the repository's own config from running programs, and
    that trust the workspace even when a volume mount made it root-owned (an emptyDir)."""
    return ["git", *SAFE_GIT, "-c", f"safe.directory={workspace}"]


def trust_env(workspace: Path) -> dict[str, str]:
    """The same trust for the git calls of setup commands and agents, as protected config."""
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory",
            "GIT_CONFIG_VALUE_0": str(workspace)}


class CheckoutError(Exception):
    """The base commit could not be checked out; the message holds git's last lines."""


def auth_env(clone_url: str, token: str) -> dict[str, str]:
    """Git config, as environment, that adds the token header for the clone URL's host only.

    GitHub takes an installation token as Basic auth with the user `x-access-token`. Scoping
    the header to the host keeps a redirect elsewhere from receiving it.
    """
    parts = urlsplit(clone_url)
    origin = f"{parts.scheme}://{parts.netloc}/"
    credentials = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"http.{origin}.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {credentials}",
    }


def git_env(base: Mapping[str, str]) -> dict[str, str]:
    """A clean environment for git: no prompts, no inherited tracing or config injection."""
    env = {key: base[key] for key in _GIT_ENV_KEEP if key in base}
    env.setdefault("PATH", os.defpath)
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": "",
                "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"})
    return env


def checkout(
    *,
    workspace: Path,
    clone_url: str,
    base_sha: str,
    base_ref: str,
    branch: str,
    token: str,
    env: Mapping[str, str],
    deadline: float,
    on_line: Callable[[str, str], None],
) -> None:
    """Fetch `base_sha` from `clone_url` into an empty `workspace` and check it out."""
    workspace.mkdir(parents=True, exist_ok=True)
    if any(workspace.iterdir()):
        raise CheckoutError(f"the workspace {workspace} is not empty")
    deadline = min(deadline, time.monotonic() + CHECKOUT_TIMEOUT_SECONDS)
    plain = git_env(env)
    with_token = {**plain, **auth_env(clone_url, token)}

    def git(*args: str, authenticated: bool = False) -> tuple[int, list[str]]:
        result = run_streaming(
            [*safe_git(workspace), *args], cwd=workspace,
            env=with_token if authenticated else plain, deadline=deadline, on_line=on_line,
        )
        if result.timed_out:
            raise CheckoutError(f"git {args[0]} ran past the checkout time limit")
        return result.returncode or 0, result.tail

    def must(*args: str) -> None:
        code, tail = git(*args)
        if code:
            raise CheckoutError(f"git {args[0]} failed (exit {code}): {_last(tail)}")

    def fetch(*args: str) -> tuple[int, list[str]]:
        wait = RETRY_FIRST_SECONDS
        while True:
            code, tail = git("fetch", *args, authenticated=True)
            if not code or not is_transient(tail) or time.monotonic() + wait >= deadline:
                return code, tail
            on_line("stderr", f"the fetch failed ({_last(tail)}); trying again in {wait:g} s")
            time.sleep(wait)
            wait = min(wait * 2, RETRY_MAX_SECONDS)

    must("init", "--quiet")
    must("remote", "add", "origin", clone_url)
    # One commit, no history: enough to diff against, and fast on big repositories.
    code, tail = fetch("--quiet", "--no-tags", "--depth=1", "origin", base_sha)
    if code:
        # Some servers refuse to serve an unadvertised SHA; the branch usually contains it.
        code2, _ = fetch("--quiet", "--no-tags", "origin",
                         f"+refs/heads/{base_ref}:refs/remotes/origin/{base_ref}")
        if code2 or git("cat-file", "-e", f"{base_sha}^{{commit}}")[0]:
            raise CheckoutError(f"git fetch of {base_sha[:12]} failed (exit {code}): "
                                f"{_last(tail)}")
    if git("checkout", "--quiet", "-B", branch, base_sha)[0]:
        must("checkout", "--quiet", "--detach", base_sha)  # the branch name is not valid here
    # Agents may commit locally; the bot writes the real commit, so any identity will do.
    must("config", "user.name", "agentbot")
    must("config", "user.email", "agentbot@users.noreply.invalid")


def is_transient(tail: list[str]) -> bool:
    """Whether git's last words say the server was unreachable or briefly failing."""
    text = "\n".join(tail).lower()
    return any(sign in text for sign in _TRANSIENT)


def add_excludes(workspace: Path, patterns: tuple[str, ...]) -> None:
    """Ignore agent droppings (history files, caches) without touching the repo's .gitignore."""
    if not patterns:
        return
    exclude = workspace / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with exclude.open("a", encoding="utf-8") as handle:
        handle.write("\n# added by the agentbot sandbox\n" + "\n".join(patterns) + "\n")


def _last(lines: list[str]) -> str:
    text = " | ".join(line.strip() for line in lines[-4:] if line.strip())
    return text or "no output"
