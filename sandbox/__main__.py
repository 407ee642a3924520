"""`python -m sandbox`: run one agent run from the spec files and exit with a documented code.

Checkout -> setup -> agent -> changeset -> upload happen in `sandbox.runner`; this module sets
up logging (with the run's secrets redacted), signal handling and the exit code.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType

from sandbox import exitcodes, procs, relay
from sandbox.callbacks import CallbackClient
from sandbox.checkout import auth_env
from sandbox.events import EventSink, Redactor
from sandbox.result import write_termination_message
from sandbox.runner import Failure, Runner
from sandbox.spec import SpecError, forget_token_files, load, spec_dir_from_env, workspace_from_env

log = logging.getLogger("sandbox")


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived: stop everything, report nothing (the bot asked for it)."""


class _RedactingFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s sandbox %(levelname)s %(message)s")
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.text(super().format(record))


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def main() -> int:
    """Entry point of `python -m sandbox`; returns the exit code (see `sandbox.exitcodes`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s sandbox %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    spec_dir, workspace = spec_dir_from_env(), workspace_from_env()
    try:
        spec, secrets = load(spec_dir)
    except SpecError as exc:
        log.error("%s", exc)
        write_termination_message(f"bad spec: {exc}")
        return exitcodes.BAD_SPEC
    forget_token_files(spec_dir)
    relay_dir = os.environ.get("AGENTBOT_RELAY_DIR")
    if relay_dir:
        # A network namespace of our own: the gateway and the bot only through the relay.
        try:
            relay.start(Path(relay_dir))
        except (OSError, ValueError) as exc:
            log.error("could not start the network relay: %s", exc)
            write_termination_message(f"could not start the network relay: {exc}")
            return exitcodes.INTERNAL
    header = auth_env(spec.clone_url, secrets.gateway_token)["GIT_CONFIG_VALUE_0"]
    redactor = Redactor([secrets.gateway_token, secrets.callback_token, header.split(" ")[-1]])
    handler.setFormatter(_RedactingFormatter(redactor))
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    client = CallbackClient(spec.callback_url, secrets.callback_token)
    sink = EventSink(client, redactor)
    runner = Runner(spec, secrets, workspace, sink, client, redactor, os.environ)
    flush = 5.0
    try:
        return runner.run()
    except Terminated:
        flush = 0.5
        log.warning("terminated by a signal; stopping the run's processes")
        write_termination_message("terminated by a signal before the run finished")
        return exitcodes.TERMINATED
    except Exception as exc:
        log.exception("internal error")
        return runner.fail(Failure(exitcodes.INTERNAL, "runner",
                                    f"The sandbox runner failed: {type(exc).__name__}: {exc}"))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        procs.kill_all_groups()
        sink.close(flush)
        shutil.rmtree(runner.tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
