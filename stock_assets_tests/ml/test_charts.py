"""Metadata charts stay small whatever the universe: a chart of 500 lines took 4.8 s a run."""

from __future__ import annotations

import datetime as dt

from stock_assets.market.sources import SyntheticSource
from stock_assets.ml.charts import CHART_TICKERS, price_chart_markdown


def test_price_chart_draws_a_few_tickers_and_says_so():
    source = SyntheticSource(
        seed=1, n_tickers=40, start=dt.date(2019, 1, 2), end=dt.date(2019, 1, 8)
    )
    frame = source.fetch(source.default_tickers, source.start, source.end)
    markdown = price_chart_markdown(frame, "raw_prices 2019-01-02 … 2019-01-08")
    assert markdown.startswith(f"![raw_prices 2019-01-02 … 2019-01-08 (first {CHART_TICKERS} of 40")
    few = price_chart_markdown(frame[frame["ticker"] < "SYN003"], "raw_prices")
    assert few.startswith("![raw_prices](data:image/png;base64,")
