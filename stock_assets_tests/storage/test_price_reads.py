"""The bounded read serving uses: each ticker's newest rows, in the basis of the full read
(to rounding), against the embedded Postgres."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from stock_assets.market.ingest import collect_prices, split_collected
from stock_assets.market.sources import Dividend, Split, SyntheticSource
from stock_assets.market.validation import validate
from stock_assets.storage.prices import prices_until, write_ingest
from stock_assets.storage.schema import MISSING_COLUMNS, REJECTED_COLUMNS
from stock_assets_tests.conftest import query

FIRST, LAST = dt.date(2017, 1, 3), dt.date(2019, 12, 31)
SOURCE = SyntheticSource(
    seed=5,
    tickers=("AAA", "BBB", "NEW"),
    start=FIRST,
    end=LAST,
    splits=(Split("AAA", dt.date(2018, 3, 1), 4.0), Split("AAA", dt.date(2019, 11, 4), 2.0)),
    dividends=(
        Dividend("BBB", dt.date(2017, 6, 1), 0.5),
        Dividend("BBB", dt.date(2019, 12, 2), 0.3),
    ),
)


def _store(conn) -> None:
    frame = collect_prices(SOURCE, list(SOURCE.default_tickers), FIRST, LAST).frame
    frame = frame[(frame["ticker"] != "NEW") | (frame["trade_date"] >= dt.date(2019, 11, 1))]
    bars, actions = split_collected(validate(frame).good)
    nothing = pd.DataFrame(columns=[*REJECTED_COLUMNS])
    gaps = pd.DataFrame(columns=[*MISSING_COLUMNS])
    write_ingest(conn, FIRST, LAST, bars, actions, nothing, gaps)


def test_a_tail_read_is_the_full_reads_tail_across_actions(conn, stocks_url):
    """An action before the tail scales no row in it; one inside it scales as in the full read;
    a ticker with fewer rows than asked reads them all; `since` keeps the rows after it."""
    _store(conn)
    cutoff, since = dt.date(2019, 12, 20), dt.date(2019, 12, 16)
    full = prices_until(conn, ["AAA", "BBB", "NEW"], cutoff)
    tail = prices_until(conn, ["AAA", "BBB", "NEW"], cutoff, since=since, rows=100)
    for ticker, rows in full.groupby("ticker"):
        before = rows[rows["trade_date"] < since]
        expected = pd.concat([before.tail(100), rows[rows["trade_date"] >= since]])
        got = tail[tail["ticker"] == ticker]
        assert len(got) == min(len(rows), 100 + 5), ticker
        # equal up to rounding: the full read sums log factors that include the earlier ones
        pd.testing.assert_frame_equal(
            got.reset_index(drop=True), expected.reset_index(drop=True), rtol=1e-13
        )
    # the lookup is an index range per ticker, not a scan of the table, and the index holds
    # the bars (INCLUDE): the rows come from its pages, not one heap page each
    defs = dict(query(stocks_url, "SELECT indexname, indexdef FROM pg_indexes"))
    assert (
        "INCLUDE (open, high, low, close, volume)" in defs["raw_prices_ticker_trade_date_cover_idx"]
    )
    assert "raw_prices_ticker_trade_date_idx" not in defs  # superseded: one index to maintain
    # a range write leaves the table vacuumed and analysed: an index-only read from the start
    settled = query(
        stocks_url,
        "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL FROM pg_stat_user_tables "
        "WHERE relname = 'raw_prices'",
    )
    assert settled == [(True, True)]
