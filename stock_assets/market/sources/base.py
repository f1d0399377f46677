"""What every price source returns, and the errors they raise."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import pandas as pd

# Canonical columns a source returns: prices and volume as traded on the day (never in a later
# basis), and the day's corporate actions: split_ratio is new shares per old share on the
# split's ex-date (1.0 on every other day), dividend the cash per share going ex that day.
PRICE_COLUMNS: tuple[str, ...] = (
    "trade_date",
    "ticker",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "dividend",
    "split_ratio",
)


class SourceError(ValueError):
    """A request the source cannot answer: unknown ticker, date out of range, bad file. Asking
    again will not help, so it fails the run at once."""


class SourceUnavailable(SourceError):
    """The source did not answer (network, rate limit, outage) after its own retries: that may
    heal, so raw_prices retries it later with back-off."""


def empty_prices() -> pd.DataFrame:
    return conform(pd.DataFrame({c: [] for c in PRICE_COLUMNS}))


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical column order and dtypes; trade_date as datetime.date objects."""
    out = pd.DataFrame(
        {
            "trade_date": pd.Series(
                pd.DatetimeIndex(pd.to_datetime(frame["trade_date"])).date, dtype=object
            ),
            "ticker": frame["ticker"].astype(str).to_numpy(dtype=object),
        }
    )
    for col in ("open", "high", "low", "close", "dividend", "split_ratio"):
        out[col] = pd.to_numeric(frame[col], errors="raise").astype("float64").to_numpy()
    # A count, nullable: a missing volume stays missing for validation to see; an infinite one
    # keeps the column float so the rejected row shows it.
    volume = pd.to_numeric(frame["volume"], errors="raise").astype("float64").round()
    finite = np.isfinite(volume.to_numpy()) | volume.isna().to_numpy()
    out["volume"] = volume.astype("Int64").to_numpy() if finite.all() else volume.to_numpy()
    return out[list(PRICE_COLUMNS)]


class PriceSource(ABC):
    """A source of daily prices for a set of tickers."""

    name: str
    default_tickers: tuple[str, ...]
    default_start: str
    live: bool = False  # serves today's bar while the session trades (a vendor API)

    @property
    def data_end(self) -> dt.date | None:
        """The last day a historical source has (its partitions end there); None: it grows."""
        return None

    def check(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> None:
        """Raise SourceError for a request that cannot be answered, before anything is fetched."""
        if not tickers:
            raise SourceError(f"{self.name}: the ticker list is empty")
        if end < start:
            raise SourceError(f"{self.name}: end {end} is before start {start}")

    def basis(self, ticker: str) -> str:
        """How a ticker's rows come: "as traded" (with actions) or "adjusted by the source"."""
        return "as traded"

    def fetch_each(
        self, tickers: Sequence[str], start: dt.date, end: dt.date
    ) -> tuple[pd.DataFrame, dict[str, str]]:
        """The rows of every ticker that answered, and why each failing ticker failed: one bad
        ticker (delisted, rate-limited past its retries) must not stop the others."""
        try:
            return self.fetch(tickers, start, end), {}
        except SourceError:
            if len(tickers) == 1:
                raise
        frames, failed = [], {}
        for ticker in tickers:
            try:
                frames.append(self.fetch([ticker], start, end))
            except SourceError as exc:
                failed[ticker] = str(exc)
        return (pd.concat(frames, ignore_index=True) if frames else empty_prices()), failed

    @abstractmethod
    def fetch(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """Rows for [start, end] (inclusive) in PRICE_COLUMNS; days without data are absent."""
