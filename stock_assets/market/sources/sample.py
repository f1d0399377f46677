"""Real daily S&P 500 and NASDAQ Composite series shipped in the `arch` package: offline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache

import pandas as pd

from stock_assets.market.sources.base import PriceSource, SourceError, conform

FIRST, LAST = dt.date(1999, 1, 4), dt.date(2018, 12, 31)


@lru_cache(maxsize=1)
def _series() -> dict[str, pd.DataFrame]:
    from arch.data import nasdaq, sp500

    return {"^GSPC": sp500.load(), "^IXIC": nasdaq.load()}


class SampleSource(PriceSource):
    name = "sample"
    default_tickers = ("^GSPC", "^IXIC")
    default_start = FIRST.isoformat()

    @property
    def data_end(self) -> dt.date:
        return LAST

    def check(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> None:
        super().check(tickers, start, end)
        unknown = [t for t in tickers if t not in self.default_tickers]
        if unknown:
            raise SourceError(
                f"sample: unknown ticker(s) {', '.join(unknown)}; it has "
                f"{', '.join(self.default_tickers)}"
            )
        if start < FIRST or end > LAST:
            raise SourceError(
                f"sample: {start}..{end} is outside the data it has ({FIRST}..{LAST})"
            )

    def fetch(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        frames = []
        for ticker in tickers:
            raw = _series()[ticker]
            raw = raw.loc[pd.Timestamp(start) : pd.Timestamp(end)]
            frames.append(
                pd.DataFrame(
                    {
                        "trade_date": raw.index,
                        "ticker": ticker,
                        "open": raw["Open"].to_numpy(),
                        "high": raw["High"].to_numpy(),
                        "low": raw["Low"].to_numpy(),
                        "close": raw["Close"].to_numpy(),
                        "volume": raw["Volume"].to_numpy(),
                        "dividend": 0.0,
                        "split_ratio": 1.0,
                    }
                )
            )
        return conform(pd.concat(frames, ignore_index=True))
