"""Times on pages are the viewer's local time, never raw UTC with "+00:00"."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline import clock
from pipeline.jobs import board


@pytest.fixture(autouse=True)
def machine_zone_after():
    yield
    clock.use_zone(None, lambda: None)  # later tests see this machine's zone again


def test_a_stored_utc_time_shows_in_the_viewers_zone_to_the_minute():
    clock.use_zone("Asia/Tokyo")
    assert clock.local(datetime(2026, 12, 2, 12, 5, 30)) == "2026-12-02 21:05 JST"  # naive: the store's UTC
    assert clock.local(datetime(2026, 12, 2, 12, 5, 30, tzinfo=UTC), seconds=True) == "2026-12-02 21:05:30 JST"
    assert clock.local(None) == "—"


def test_an_unknown_zone_falls_back_to_this_machines_and_never_fails():
    clock.use_zone("Not/AZone")
    shown = clock.local(datetime(2026, 12, 2, 12, 0))
    assert shown.startswith("2026-12-0") and "+00:00" not in shown


def test_a_fragment_rerun_finds_the_viewers_zone_through_the_lookup():
    clock.use_zone(None, lambda: "America/New_York")
    assert clock.local(datetime(2026, 7, 1, 12, 0)) == "2026-07-01 08:00 EDT"


def test_the_job_log_shows_its_stamps_in_local_time_and_keeps_the_split():
    clock.use_zone("Europe/Paris")
    log = "2026-12-02 12:00:01 job 1 started\nFutureWarning: something\n2026-12-02 12:00:09 job succeeded"
    said, technical = board.split_log(log)
    assert said.splitlines() == ["2026-12-02 13:00:01 job 1 started", "2026-12-02 13:00:09 job succeeded"]
    assert technical == "FutureWarning: something"
