"""Validation before write and the settle rule for live sessions: pure, no Postgres."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

from stock_assets.market.calendars import SessionNotClosed, available_at, require_closed
from stock_assets.market.validation import missing_keys, missing_shares, validate

D = dt.date
NY = "America/New_York"


def _rows(*bars) -> pd.DataFrame:
    """(day, ticker, open, high, low, close[, volume, dividend, split]) tuples as fetched rows."""
    out = []
    for bar in bars:
        day, ticker, o, h, low, c, *rest = bar
        volume, dividend, split = [*rest, *[100.0, 0.0, 1.0][len(rest) :]]
        out.append(
            dict(
                trade_date=D(2024, 1, day),
                ticker=ticker,
                open=o,
                high=h,
                low=low,
                close=c,
                volume=volume,
                dividend=dividend,
                split_ratio=split,
                source="test",
            )
        )
    return pd.DataFrame(out)


@pytest.mark.parametrize(
    ("bar", "rule"),
    [
        ((3, "A", 10, math.nan, 9, 10), "missing value"),
        ((3, "A", 10, math.inf, 9, 10), "infinite value"),
        ((3, "A", 10, 11, 9, 10, math.inf), "infinite value"),
        ((3, "A", 0, 11, 9, 10), "price <= 0"),
        ((3, "A", 10, 9, 11, 10), "high < max(open, close)"),  # high < low
        ((3, "A", 10, 10.2, 10, 10.9), "high < max(open, close)"),
        ((3, "A", 10, 11, 10.5, 10.2), "low > min(open, close)"),
        ((3, "A", 10, 11, 9, 10, -1), "volume < 0"),
        ((3, "A", 10, 11, 9, 10, 100, -0.5), "dividend < 0 or split_ratio <= 0"),
        ((3, "A", 600, 600, 600, 600), "unit error: total return beyond 50x"),
        ((3, "A", 5, 5.5, 4.5, 5), "split-like ratio no recorded split explains"),
    ],
)
def test_each_rule_rejects_its_row_and_keeps_the_others(bar, rule):
    frame = _rows((2, "A", 10, 11, 9, 10), bar, (2, "B", 20, 21, 19, 20), (3, "B", 20, 21, 19, 20))
    checked = validate(frame)
    assert checked.rejected[["trade_date", "ticker", "rule"]].values.tolist() == [
        [D(2024, 1, 3), "A", rule]
    ]
    assert len(checked.good) == 3 and (D(2024, 1, 3), "A") not in set(
        zip(checked.good.trade_date, checked.good.ticker, strict=True)
    )


def test_duplicate_keys_reject_every_copy():
    frame = _rows((2, "A", 10, 11, 9, 10), (2, "A", 10, 11, 9, 10.1), (2, "B", 20, 21, 19, 20))
    checked = validate(frame)
    assert checked.rejected["rule"].tolist() == ["duplicate key", "duplicate key"]
    assert checked.good["ticker"].tolist() == ["B"]


def test_a_one_day_unit_error_rejects_that_day_alone_against_the_last_good_close():
    frame = _rows(
        (2, "A", 10, 11, 9, 10), (3, "A", 1000, 1000, 1000, 1000), (4, "A", 10, 11, 9, 10.2)
    )
    checked = validate(frame)
    assert checked.rejected["trade_date"].tolist() == [D(2024, 1, 3)]
    assert checked.moves.empty  # 2024-01-04 is judged against 2024-01-02, not the bad day


def test_an_unrecorded_split_rejects_every_day_after_it_and_a_recorded_one_passes():
    halves = [(d, "A", 5, 5.5, 4.5, 5) for d in (3, 4, 5)]
    checked = validate(_rows((2, "A", 10, 11, 9, 10), *halves))
    assert checked.rejected["trade_date"].tolist() == [D(2024, 1, d) for d in (3, 4, 5)]
    split = _rows((2, "A", 10, 11, 9, 10), (3, "A", 5, 5.5, 4.5, 5, 200, 0.0, 2.0))
    checked = validate(split)
    assert checked.rejected.empty and checked.moves["kind"].tolist() == ["split"]


def test_a_one_day_run_is_judged_against_the_stored_day_before():
    previous = pd.DataFrame({"trade_date": [D(2024, 1, 2)], "ticker": ["A"], "close": [10.0]})
    checked = validate(_rows((3, "A", 1000, 1000, 1000, 1000)), previous)
    assert checked.rejected["rule"].tolist() == ["unit error: total return beyond 50x"]


def test_missing_keys_and_shares():
    good = _rows((3, "A", 10, 11, 9, 10))
    rejected = validate(_rows((3, "B", 10, 9, 11, 10))).rejected
    unanswered = pd.DataFrame({"trade_date": [D(2024, 1, 3)], "ticker": ["C"], "reason": ["gone"]})
    missing = missing_keys(unanswered, rejected, good)
    assert missing[["ticker", "reason"]].values.tolist() == [
        ["B", "rejected: high < max(open, close)"],
        ["C", "gone"],
    ]
    assert missing_shares(missing, [D(2024, 1, 3), D(2024, 1, 4)], 4) == {
        D(2024, 1, 3): 0.5,
        D(2024, 1, 4): 0.0,
    }


def _ny(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    from zoneinfo import ZoneInfo

    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(NY))


def test_sessions_are_available_after_close_plus_settle_early_closes_included():
    settle = dt.timedelta(minutes=30)
    friday = D(2026, 11, 27)  # the day after Thanksgiving: NYSE closes at 13:00
    assert available_at(friday, "XNYS", settle) == _ny(friday, 13, 30)
    assert available_at(D(2026, 11, 25), "XNYS", settle) == _ny(D(2026, 11, 25), 16, 30)
    assert available_at(D(2026, 11, 26), "XNYS", settle) is None  # Thanksgiving: no session
    with pytest.raises(SessionNotClosed, match=r"final from 2026-11-27 13:30 EST"):
        require_closed(friday, "XNYS", settle, _ny(friday, 12, 0))
    require_closed(friday, "XNYS", settle, _ny(friday, 13, 31))
    # a holiday partition is judged by the session before it
    require_closed(D(2026, 11, 26), "XNYS", settle, _ny(D(2026, 11, 26), 9, 0))
