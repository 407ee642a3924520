"""The local executor's run records: what a sandbox's run directory says is read strictly."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.executors.local_runs import RunRecord


@pytest.mark.parametrize(("written", "read"), [
    ("0", 0), ("3\n", 3), ("-9", -9), ("", None), ("²", None), ("-²", None), ("1.5", None),
    ("٣", None), ("12abc", None),
])
def test_the_exit_code_file_is_read_as_ascii_digits_or_not_at_all(
        tmp_path: Path, written: str, read: int | None) -> None:
    (tmp_path / "exit-code").write_text(written)
    record = RunRecord(run_id=1, pid=1, start_ticks=1, run_dir=str(tmp_path), deadline=0.0,
                       timeout_seconds=60)
    assert record.exit_code() == read


def test_no_exit_code_file_reads_as_none(tmp_path: Path) -> None:
    record = RunRecord(run_id=1, pid=1, start_ticks=1, run_dir=str(tmp_path), deadline=0.0,
                       timeout_seconds=60)
    assert record.exit_code() is None
