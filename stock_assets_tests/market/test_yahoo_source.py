"""The real yfinance code path against generated Yahoo chart responses."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from stock_assets.market.ingest import collect_prices
from stock_assets.market.sources import SourceError, Split, SyntheticSource, YahooSource
from stock_assets_tests.fake_yahoo import FakeYahoo

MARKET = SyntheticSource(
    seed=3,
    tickers=("AAPL", "MSFT"),
    start=dt.date(2023, 12, 1),
    end=dt.date(2024, 2, 29),
    splits=(Split("AAPL", dt.date(2024, 1, 10), 2.0),),
)
TRUTH = MARKET.fetch(["AAPL", "MSFT"], MARKET.start, MARKET.end)


@pytest.fixture
def yahoo(monkeypatch, tmp_path):
    fake = FakeYahoo(TRUTH.copy()).install(monkeypatch)
    sleeps: list[float] = []
    source = YahooSource(retries=3, backoff=0.5, cache_dir=tmp_path / "yf", sleep=sleeps.append)
    return fake, source, sleeps


def test_history_through_yfinance_matches_the_served_prices(yahoo):
    _, source, _ = yahoo
    got = source.fetch(["AAPL", "MSFT"], dt.date(2024, 1, 2), dt.date(2024, 1, 31))
    want = TRUTH[
        (TRUTH.trade_date >= dt.date(2024, 1, 2)) & (TRUTH.trade_date <= dt.date(2024, 1, 31))
    ]
    got = got.sort_values(["ticker", "trade_date"], ignore_index=True)
    want = want.sort_values(["ticker", "trade_date"], ignore_index=True)
    assert got["trade_date"].tolist() == want["trade_date"].tolist()
    for col in ("open", "high", "low", "close", "volume"):  # as traded, whatever Yahoo's basis
        np.testing.assert_allclose(got[col], want[col], rtol=1e-9)
    split_day = got[(got.ticker == "AAPL") & (got.split_ratio != 1.0)]
    assert split_day["trade_date"].tolist() == [dt.date(2024, 1, 10)]
    assert split_day["split_ratio"].iloc[0] == 2.0


def _missing(collected) -> list[tuple]:
    return list(collected.missing.itertuples(index=False, name=None))


def test_holiday_is_empty_but_an_outage_is_recorded_as_missing(yahoo):
    fake, source, _ = yahoo
    # 2024-01-15 is Martin Luther King Jr. Day: nothing to fetch, nothing missing.
    holiday = collect_prices(source, ["AAPL", "MSFT"], dt.date(2024, 1, 15), dt.date(2024, 1, 15))
    assert holiday.frame.empty and holiday.missing.empty
    fake.drop.add(("MSFT", dt.date(2024, 1, 16)))
    got = collect_prices(source, ["AAPL", "MSFT"], dt.date(2024, 1, 16), dt.date(2024, 1, 16))
    assert got.frame["ticker"].tolist() == ["AAPL"]
    assert _missing(got) == [
        (dt.date(2024, 1, 16), "MSFT", "yfinance returned no row for a session of XNYS")
    ]


def test_a_failing_ticker_is_recorded_with_its_error_and_the_others_fetched(yahoo):
    _, source, _ = yahoo
    got = collect_prices(source, ["AAPL", "NOPE"], dt.date(2024, 1, 17), dt.date(2024, 1, 17))
    assert got.frame["ticker"].tolist() == ["AAPL"]
    ((day, ticker, reason),) = _missing(got)
    assert (day, ticker) == (dt.date(2024, 1, 17), "NOPE") and "delisted ticker 'NOPE'" in reason


def test_rate_limit_then_success_backs_off(yahoo):
    fake, source, sleeps = yahoo
    fake.rate_limited = 2
    got = source.fetch(["AAPL"], dt.date(2024, 1, 2), dt.date(2024, 1, 5))
    assert len(got) == 4
    assert sleeps == [0.5, 1.0]


def test_rate_limit_that_never_ends_is_a_clear_error(yahoo):
    fake, source, sleeps = yahoo
    fake.rate_limited = 100
    with pytest.raises(SourceError, match="AAPL failed after 4 attempts: YFRateLimitError"):
        source.fetch(["AAPL"], dt.date(2024, 1, 2), dt.date(2024, 1, 5))
    assert sleeps == [0.5, 1.0, 2.0]


def test_unknown_ticker_is_a_clear_error(yahoo):
    _, source, _ = yahoo
    with pytest.raises(SourceError, match="unknown or delisted ticker 'NOPE'"):
        source.fetch(["NOPE"], dt.date(2024, 1, 2), dt.date(2024, 1, 5))


def test_nan_bars_are_dropped_by_yfinance_and_become_an_outage(yahoo):
    fake, source, _ = yahoo
    fake.nan_bars.add(("AAPL", dt.date(2024, 1, 3)))
    got = source.fetch(["AAPL"], dt.date(2024, 1, 2), dt.date(2024, 1, 5))
    assert dt.date(2024, 1, 3) not in set(got["trade_date"]) and len(got) == 3
    got = collect_prices(source, ["AAPL"], dt.date(2024, 1, 2), dt.date(2024, 1, 5))
    assert [(d, t) for d, t, _ in _missing(got)] == [(dt.date(2024, 1, 3), "AAPL")]
