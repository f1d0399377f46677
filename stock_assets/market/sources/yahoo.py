"""Yahoo Finance through yfinance: the real source, used wherever a network exists.

Every response is untrusted: an empty frame is how Yahoo reports both a holiday and a failure,
so this module returns what it got and the ingest step, which knows the calendar, decides.

Yahoo's bars are split-adjusted as of the day of the fetch, splits after the requested range
included (`Adj Close` is dividend-adjusted too, and never used here). Each request therefore
runs to the fetch day, and the bars are turned back into prices as traded with the splits
that followed them; the actions come from `Stock Splits` and `Dividends` on their ex-dates.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stock_assets.market.sources.base import (
    PriceSource,
    SourceError,
    SourceUnavailable,
    conform,
    empty_prices,
)

log = logging.getLogger(__name__)

OLD_SYSTEM_TICKERS = ("AAPL", "MA", "CSCO", "MSFT", "AMZN", "GOOG", "IBM")


class YahooSource(PriceSource):
    name = "yfinance"
    live = True
    default_tickers = OLD_SYSTEM_TICKERS
    default_start = "2015-01-02"

    def __init__(
        self,
        retries: int = 4,
        backoff: float = 2.0,
        cache_dir: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        today: Callable[[], dt.date] = dt.date.today,
    ):
        import yfinance as yf

        self.retries, self.backoff, self.sleep = retries, backoff, sleep
        self.cache_dir = cache_dir
        self.today = today
        yf.config.debug.hide_exceptions = False  # errors must reach us, not a log line
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            yf.set_tz_cache_location(str(cache_dir))

    def fetch(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        frames = [f for f in (self._fetch_one(t, start, end) for t in tickers) if len(f)]
        return conform(pd.concat(frames, ignore_index=True)) if frames else empty_prices()

    def fetch_each(
        self, tickers: Sequence[str], start: dt.date, end: dt.date
    ) -> tuple[pd.DataFrame, dict[str, str]]:
        """One request per ticker anyway: a failure is that ticker's alone, never refetched."""
        frames, failed = [], {}
        for ticker in tickers:
            try:
                frames.append(self._fetch_one(ticker, start, end))
            except SourceError as exc:
                failed[ticker] = str(exc)
        frames = [f for f in frames if len(f)]
        return (conform(pd.concat(frames, ignore_index=True)) if frames else empty_prices()), failed

    def _fetch_one(self, ticker: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        import yfinance as yf
        from yfinance.exceptions import (
            YFPricesMissingError,
            YFRateLimitError,
            YFTzMissingError,
        )

        delay = self.backoff
        for attempt in range(1, self.retries + 2):
            try:
                # to the fetch day: the splits after `end` tell the basis of the bars
                until = max(end, self.today()) + dt.timedelta(days=1)  # yfinance's end is exclusive
                history = yf.Ticker(ticker).history(
                    start=start.isoformat(),
                    end=until.isoformat(),
                    interval="1d",
                    auto_adjust=False,
                    actions=True,
                )
                frame = _canonical(ticker, history)
                return frame[frame["trade_date"] <= pd.Timestamp(end)]
            except YFTzMissingError as exc:
                raise SourceError(f"yfinance: unknown or delisted ticker {ticker!r}") from exc
            except YFPricesMissingError:
                return _canonical(ticker, pd.DataFrame())  # holiday or outage: caller decides
            except (YFRateLimitError, OSError, ConnectionError) as exc:
                error = exc
            except Exception as exc:  # curl/HTTP errors and Yahoo outages vary by release
                if type(exc).__module__.split(".")[0] not in ("yfinance", "curl_cffi", "requests"):
                    raise
                error = exc
            if attempt > self.retries:
                break
            log.warning(
                "yfinance %s: %s (attempt %d), retrying in %.1fs", ticker, error, attempt, delay
            )
            self.sleep(delay)
            delay *= 2
        raise SourceUnavailable(
            f"yfinance: {ticker} failed after {self.retries + 1} attempts: "
            f"{type(error).__name__}: {error}"
        ) from error


def _canonical(ticker: str, history: pd.DataFrame) -> pd.DataFrame:
    """Yahoo's bars (split-adjusted as of the last row's day) as traded, with their actions."""
    if history is None or history.empty:
        return empty_prices()
    index = pd.DatetimeIndex(history.index)
    if index.tz is not None:
        index = index.tz_localize(None)
    zeros = pd.Series(0.0, index=history.index)
    splits = history.get("Stock Splits", zeros).fillna(0.0).to_numpy(float)
    ratio = np.where(splits > 0, splits, 1.0)
    # splits strictly after each bar, up to the fetch: the bar's price is divided by them
    later = np.exp(np.cumsum(np.log(ratio)[::-1])[::-1] - np.log(ratio))
    return pd.DataFrame(
        {
            "trade_date": index.normalize(),
            "ticker": ticker,
            "open": history["Open"].to_numpy(float) * later,
            "high": history["High"].to_numpy(float) * later,
            "low": history["Low"].to_numpy(float) * later,
            "close": history["Close"].to_numpy(float) * later,
            "volume": history["Volume"].to_numpy(float) / later,
            "dividend": history.get("Dividends", zeros).fillna(0.0).to_numpy(float) * later,
            "split_ratio": ratio,
        }
    )
