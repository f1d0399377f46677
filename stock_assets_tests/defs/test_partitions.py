"""trading_days partitions and the after-close schedule agree on which session is due."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from dagster import build_schedule_context

from stock_assets.definitions import build_definitions
from stock_assets.defs.partitions import trading_days_partitions
from stock_assets.market.calendars import is_session, previous_session, sessions_between

NY = ZoneInfo("America/New_York")


def test_session_partition_exists_after_its_close():
    pdef = trading_days_partitions("2018-12-20", "America/New_York")
    at_close = dt.datetime(2018, 12, 31, 18, 30, tzinfo=NY)
    keys = pdef.get_partition_keys(current_time=at_close)
    assert keys[-1] == "2018-12-31"
    assert "2018-12-22" not in keys and "2018-12-25" in keys  # weekend out, holiday in (empty)


def _tick(day: dt.date):
    defs = build_definitions()
    schedule = defs.resolve_schedule_def("daily_after_close")
    context = build_schedule_context(
        scheduled_execution_time=dt.datetime.combine(day, dt.time(18, 30), NY),
        repository_def=defs.get_repository_def(),
    )
    return schedule.evaluate_tick(context)


def test_schedule_at_1830_targets_that_days_partition():
    requests = list(_tick(dt.date(2018, 12, 31)).run_requests or [])
    assert [r.partition_key for r in requests] == ["2018-12-31"]
    assert requests[0].job_name in (None, "daily_operations")


def test_schedule_materializes_an_exchange_holiday_empty_like_a_backfill():
    (request,) = _tick(dt.date(2018, 12, 25)).run_requests
    assert request.partition_key == "2018-12-25"
    assert request.tags["stock_assets/exchange_closed"] == "true"
    (session,) = _tick(dt.date(2018, 12, 24)).run_requests
    assert "stock_assets/exchange_closed" not in session.tags


def test_calendar_matches_the_real_sample_sessions():
    assert len(sessions_between(dt.date(2018, 1, 1), dt.date(2018, 12, 31))) == 251
    assert len(sessions_between(dt.date(1999, 1, 1), dt.date(2018, 12, 31))) == 5031
    assert not is_session(dt.date(2018, 12, 5))  # national day of mourning (G. H. W. Bush)
    assert previous_session(dt.date(2018, 12, 26)) == dt.date(2018, 12, 24)
