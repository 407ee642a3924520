"""The check run's line on a follow-up's agent session: resuming, resumed, or fresh and why."""

from __future__ import annotations

import pytest

from bot.report.text import Progress, check_run_body, session_line
from tests.web.test_links import NOW, a_run

RESUMING = {"session": {"resume_from": 7}}


@pytest.mark.parametrize(("config", "state", "result", "line"), [
    (None, "running", None, None),  # a first run: nothing to say
    ({"budget": None}, "running", None, None),
    (RESUMING, "running", None, "resumes the agent session of run #7"),
    (RESUMING, "succeeded", {"stats": {"session_resumed": True}},
     "resumed the agent session of run #7"),
    # Asked to resume, but the sandbox had to start fresh: its own reason.
    (RESUMING, "succeeded", {"stats": {"session_resumed": False, "session_note":
                                       "the agent could not load the earlier session (x)"}},
     "started fresh, not resuming: the agent could not load the earlier session (x)"),
    (RESUMING, "failed", {"stats": {}}, "started fresh, not resuming: the agent kept none"),
    ({"session": {"fresh": "`--fresh` asked for one"}}, "running", None,
     "started fresh, not resuming: `--fresh` asked for one"),
], ids=["first", "no-choice", "resuming", "resumed", "refused", "no-stats", "fresh"])
def test_the_session_line(config: dict[str, object] | None, state: str,
                          result: dict[str, object] | None, line: str | None) -> None:
    run = a_run(config=config, state=state, result=result, finished_at=NOW)
    assert session_line(run) == line
    summary = check_run_body(run, Progress(), NOW)["output"]["summary"]
    if line is None:
        assert "**Session:**" not in summary
    else:
        assert f"**Session:** {line}." in summary
