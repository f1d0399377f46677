"""A seeded synthetic market: any tickers and dates, regime changes and splits on demand.

Each ticker's path depends only on (seed, ticker), never on the range asked for, so any
partition fetched alone equals the same rows fetched as part of a backfill.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from stock_assets.market.calendars import sessions_between
from stock_assets.market.sources.base import PriceSource, SourceError, conform


@dataclass(frozen=True)
class Regime:
    """From `start` on, daily log returns have this drift and volatility."""

    start: dt.date
    drift: float
    volatility: float


@dataclass(frozen=True)
class Split:
    ticker: str
    day: dt.date
    ratio: float  # new shares per old share


@dataclass(frozen=True)
class Dividend:
    ticker: str
    day: dt.date  # ex-date
    amount: float  # cash per share (post-split shares when a split falls the same day)


@dataclass(frozen=True)
class SyntheticSource(PriceSource):
    seed: int = 7
    n_tickers: int = 5
    start: dt.date = dt.date(2015, 1, 2)
    end: dt.date = dt.date(2024, 12, 31)
    regimes: tuple[Regime, ...] = (Regime(dt.date(1990, 1, 1), 0.0003, 0.012),)
    splits: tuple[Split, ...] = ()
    dividends: tuple[Dividend, ...] = ()
    exchange: str = "XNYS"
    tickers: tuple[str, ...] = field(default=())

    name = "synthetic"

    @property
    def default_tickers(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.tickers or tuple(f"SYN{i:03d}" for i in range(self.n_tickers))

    @property
    def default_start(self) -> str:  # type: ignore[override]
        return self.start.isoformat()

    @property
    def data_end(self) -> dt.date:
        return self.end

    def check(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> None:
        super().check(tickers, start, end)
        unknown = sorted(set(tickers) - set(self.default_tickers))
        if unknown:
            raise SourceError(f"synthetic: unknown ticker(s) {', '.join(unknown[:10])}")
        if start < self.start or end > self.end:
            raise SourceError(
                f"synthetic: {start}..{end} is outside the data it has ({self.start}..{self.end})"
            )

    def fetch(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        # one frame of the asked slices, not one frame per ticker (a day of 5,000 tickers
        # built 5,000 frames of their whole paths)
        sessions = _sessions(self.start, self.end, self.exchange)
        lo, hi = (
            sessions.searchsorted(pd.Timestamp(start)),
            sessions.searchsorted(pd.Timestamp(end), side="right"),
        )
        paths = [_path(self, t) for t in tickers]
        if not paths:
            return conform(pd.DataFrame({c: [] for c in ("trade_date", "ticker", *_PATH_COLUMNS)}))
        columns = {c: np.concatenate([p[c][lo:hi] for p in paths]) for c in _PATH_COLUMNS}
        frame = pd.DataFrame(
            {
                "trade_date": np.tile(sessions[lo:hi].to_numpy(), len(tickers)),
                "ticker": np.repeat(np.asarray(tickers, dtype=object), hi - lo),
                **columns,
            }
        )
        return conform(frame)


@lru_cache(maxsize=16)
def _sessions(start: dt.date, end: dt.date, exchange: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(sessions_between(start, end, exchange))  # once, not per ticker


_PATH_COLUMNS = ("open", "high", "low", "close", "volume", "dividend", "split_ratio")


@lru_cache(maxsize=8192)
def _path(source: SyntheticSource, ticker: str) -> dict[str, np.ndarray]:
    """A ticker's columns over every session of the source's span."""
    sessions = _sessions(source.start, source.end, source.exchange)
    n = len(sessions)
    rng = np.random.default_rng([source.seed, zlib.crc32(ticker.encode())])
    drift = np.empty(n)
    vol = np.empty(n)
    for regime in sorted(source.regimes, key=lambda r: r.start):
        on = sessions >= pd.Timestamp(regime.start)
        drift[on], vol[on] = regime.drift, regime.volatility
    log_ret = drift + vol * rng.standard_normal(n)
    log_ret[0] = 0.0
    value = 50.0 * np.exp(rng.uniform(0, 2)) * np.exp(np.cumsum(log_ret))  # split-free price
    ratio = np.ones(n)
    for split in source.splits:
        if split.ticker == ticker:
            on = sessions == pd.Timestamp(split.day)
            if not on.any():
                raise SourceError(f"synthetic: split day {split.day} is not a session")
            ratio[on] = split.ratio
    shares_factor = np.cumprod(ratio)  # shares per original share, as of each day
    dividend = np.zeros(n)
    for div in source.dividends:
        if div.ticker == ticker:
            on = sessions == pd.Timestamp(div.day)
            if not on.any():
                raise SourceError(f"synthetic: dividend day {div.day} is not a session")
            dividend[on] = div.amount
    close = value / shares_factor  # as traded; `value` is the total-return path
    if dividend.any():  # the price drops by the cash paid out: s·(P_t + D_t) = P_{t-1}·e^r
        for t in range(1, n):
            close[t] = close[t - 1] * np.exp(log_ret[t]) / ratio[t] - dividend[t]
            if close[t] <= 0:
                raise SourceError(f"synthetic: dividend on {sessions[t].date()} exceeds the price")
    gap = np.exp(0.25 * vol * rng.standard_normal(n))
    open_ = np.r_[close[0], close[:-1] / ratio[1:] - dividend[1:]] * gap
    wick = np.abs(vol * rng.standard_normal((2, n))) * 0.5
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    volume = rng.integers(1_000_000, 10_000_000, n) * shares_factor
    return {
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "dividend": dividend,
        "split_ratio": ratio,
    }
