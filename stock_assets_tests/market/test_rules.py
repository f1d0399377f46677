"""Quality rules and calendar logic, pure: no Postgres, no Dagster."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from stock_assets.market.calendars import next_sessions, sessions_among
from stock_assets.market.ingest import partition_notes
from stock_assets.market.quality import calendar_gaps, missing_in_window, ohlc_violations

D = dt.date


def _bar(day, ticker="A", o=10.0, h=11.0, low=9.0, c=10.5, v=100):
    return dict(trade_date=day, ticker=ticker, open=o, high=h, low=low, close=c, volume=v)


def test_ohlc_violations_name_the_bad_rows():
    frame = pd.DataFrame([_bar(D(2024, 1, 2)), _bar(D(2024, 1, 3), h=10.2, c=10.9)])
    frame["adj_close"] = frame["close"]
    bad = ohlc_violations(frame)
    assert list(bad["trade_date"]) == [D(2024, 1, 3)]


def test_calendar_gaps_and_the_missing_message():
    stored = pd.DataFrame({"trade_date": [D(2024, 1, 2), D(2024, 1, 4)], "ticker": ["A", "A"]})
    gaps = calendar_gaps(stored, [D(2024, 1, 2), D(2024, 1, 3), D(2024, 1, 4)], ["A"])
    assert list(gaps.itertuples(index=False, name=None)) == [(D(2024, 1, 3), "A")]
    message = missing_in_window(stored, ["A"], D(2024, 1, 4), "XNYS")
    assert "missing 1 row(s)" in message and "A on 2024-01-03" in message
    assert missing_in_window(stored.iloc[:0], ["A"], D(2024, 1, 4), "XNYS").startswith(
        "raw_prices holds no rows"
    )


def test_sessions_among_drops_holidays_and_next_session_skips_them():
    keys = ["2018-12-21", "2018-12-24", "2018-12-25", "2018-12-26"]
    assert sessions_among(keys) == [D(2018, 12, 21), D(2018, 12, 24), D(2018, 12, 26)]
    assert next_sessions([D(2018, 12, 24), D(2018, 12, 31)]) == {
        D(2018, 12, 24): D(2018, 12, 26),
        D(2018, 12, 31): D(2019, 1, 2),
    }


def test_partition_notes_label_closed_weekdays():
    frame = pd.DataFrame([_bar(D(2018, 12, 24)), _bar(D(2018, 12, 24), "B")])
    notes = partition_notes(["2018-12-24", "2018-12-25"], frame, 2, {D(2018, 12, 24)}, "XNYS")
    assert notes["2018-12-24"] == {"rows": 2, "tickers": 2, "exchange_open": True}
    assert notes["2018-12-25"]["note"] == "XNYS was closed: empty partition"
