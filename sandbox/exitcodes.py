"""The runner's exit codes: one per failing step, shared with the executors that report them."""

from __future__ import annotations

OK = 0  # a result was uploaded: succeeded or no_changes
INTERNAL = 1  # an unexpected error in the runner itself (Python's own code for an uncaught error)
BAD_SPEC = 10  # spec.json or a token file is missing or malformed; nothing could be reported
CHECKOUT = 11  # git could not fetch the base commit (auth, network, unknown SHA)
SETUP = 12  # a setup command exited non-zero
AGENT = 13  # the agent exited non-zero or reported an error
CHANGESET = 14  # the changes could not be collected or broke a limit (submodule, size, path)
UPLOAD = 15  # the result could not be delivered to the bot after retries
TIMEOUT = 16  # setup or the agent ran past its wall-clock limit and was killed
TERMINATED = 143  # SIGTERM from outside (cancel, Job deadline): children killed, no result sent

_MEANINGS = {
    OK: "ok",
    INTERNAL: "internal error in the sandbox runner",
    BAD_SPEC: "bad spec or token files",
    CHECKOUT: "checkout failed",
    SETUP: "setup failed",
    AGENT: "agent failed",
    CHANGESET: "changeset rejected",
    UPLOAD: "result upload failed",
    TIMEOUT: "timed out",
    TERMINATED: "terminated by a signal",
}


def describe(code: int | None) -> str:
    """A short human meaning for an exit code (negative codes are deaths by signal number)."""
    if code is None:
        return "no exit code"
    if code < 0:
        return f"killed by signal {-code}"
    if code in _MEANINGS:
        return _MEANINGS[code]
    if code > 128:
        return f"killed by signal {code - 128}"
    return "unknown exit code"
