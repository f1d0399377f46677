"""Price sources, chosen by STOCK_ASSETS_SOURCE."""

from __future__ import annotations

import datetime as dt

from stock_assets.market.sources.base import (
    PRICE_COLUMNS,
    PriceSource,
    SourceError,
    SourceUnavailable,
    conform,
)
from stock_assets.market.sources.csv_folder import CsvSource
from stock_assets.market.sources.sample import SampleSource
from stock_assets.market.sources.synthetic import Dividend, Regime, Split, SyntheticSource
from stock_assets.market.sources.yahoo import YahooSource
from stock_assets.settings import Settings

SOURCE_NAMES = ("yfinance", "csv", "sample", "synthetic")

__all__ = [
    "PRICE_COLUMNS",
    "SOURCE_NAMES",
    "CsvSource",
    "Dividend",
    "PriceSource",
    "Regime",
    "SampleSource",
    "SourceError",
    "SourceUnavailable",
    "Split",
    "SyntheticSource",
    "YahooSource",
    "conform",
    "source_from_settings",
]


def source_from_settings(settings: Settings) -> PriceSource:
    name, s = settings.market.source, settings.sources
    if name == "sample":
        return SampleSource()
    if name == "synthetic":
        return SyntheticSource(
            seed=s.synthetic_seed,
            n_tickers=s.synthetic_tickers,
            start=dt.date.fromisoformat(s.synthetic_start),
            end=dt.date.fromisoformat(s.synthetic_end),
            exchange=settings.market.exchange,
            regimes=(
                Regime(dt.date(1990, 1, 1), 0.0003, 0.012),
                *(Regime(dt.date.fromisoformat(d), 0.0003, v) for d, v in s.synthetic_regimes),
            ),
        )
    if name == "csv":
        return CsvSource(s.csv_dir)
    if name == "yfinance":
        return YahooSource(
            retries=s.yf_retries,
            backoff=s.yf_backoff,
            cache_dir=settings.home / "yfinance-cache",
        )
    raise SourceError(f"unknown STOCK_ASSETS_SOURCE {name!r}; choose one of {SOURCE_NAMES}")
