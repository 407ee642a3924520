"""The run pages benchmark itself: one small round measures both phases and every viewer
receives the events of its run."""

from __future__ import annotations

import argparse

from bench import run_pages as bench


async def test_a_small_round_measures_both_phases() -> None:
    result = await bench.main(argparse.Namespace(runs=2, viewers=4, duration=2.0,
                                                 server_cpu="0", load_cpu="1",
                                                 wake_slice=0, switch_interval=0.0,
                                                 slow_callback_ms=0.0, lag_file=None,
                                                 sender_first=False, commit_file=None,
                                                 sends_file=None))
    without, with_viewers = result["without_viewers"], result["with_viewers"]
    assert without["viewers"] == 0 and with_viewers["viewers"] == 4
    assert without["cpu_percent"] > 0 and with_viewers["cpu_percent"] > 0
    assert without["webhooks"] > 0 and with_viewers["webhooks"] > 0
    # 2 events a second for the 3 s warm-up and the 2 s measured: a viewer that got fewer
    # than a few missed some.
    assert with_viewers["events_per_viewer"] >= 6
