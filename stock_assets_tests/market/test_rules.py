"""Quality rules and calendar logic, pure: no Postgres, no Dagster."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from stock_assets.market.calendars import next_sessions, sessions_among
from stock_assets.market.ingest import partition_notes
from stock_assets.market.quality import calendar_gaps

D = dt.date


def _bar(day, ticker="A", o=10.0, h=11.0, low=9.0, c=10.5, v=100):
    return dict(trade_date=day, ticker=ticker, open=o, high=h, low=low, close=c, volume=v)


def test_calendar_gaps():
    stored = pd.DataFrame({"trade_date": [D(2024, 1, 2), D(2024, 1, 4)], "ticker": ["A", "A"]})
    gaps = calendar_gaps(stored, [D(2024, 1, 2), D(2024, 1, 3), D(2024, 1, 4)], ["A"])
    assert list(gaps.itertuples(index=False, name=None)) == [(D(2024, 1, 3), "A")]


def test_sessions_among_drops_holidays_and_next_session_skips_them():
    keys = ["2018-12-21", "2018-12-24", "2018-12-25", "2018-12-26"]
    assert sessions_among(keys) == [D(2018, 12, 21), D(2018, 12, 24), D(2018, 12, 26)]
    assert next_sessions([D(2018, 12, 24), D(2018, 12, 31)]) == {
        D(2018, 12, 24): D(2018, 12, 26),
        D(2018, 12, 31): D(2019, 1, 2),
    }


def test_partition_notes_label_closed_weekdays():
    frame = pd.DataFrame([_bar(D(2018, 12, 24)), _bar(D(2018, 12, 24), "B")])
    missing = pd.DataFrame({"trade_date": [D(2018, 12, 24)], "ticker": ["C"], "reason": ["why"]})
    days = ["2018-12-24", "2018-12-25"]
    notes = partition_notes(days, frame, missing, 3, {D(2018, 12, 24)}, "XNYS")
    assert notes["2018-12-24"] == {
        "rows": 2,
        "tickers": 3,
        "exchange_open": True,
        "missing_tickers": {"C": "why"},
    }
    assert notes["2018-12-25"]["note"] == "XNYS was closed: empty partition"
