"""A folder with one daily CSV per ticker (file name = ticker), in the common export layouts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import pandas as pd

from stock_assets.market.sources.base import PriceSource, SourceError, conform

# Accepted header spellings (case-insensitive, spaces/underscores ignored) -> canonical column.
_HEADERS = {
    "date": "trade_date",
    "tradedate": "trade_date",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "adjclose": "adj_close",
    "adjustedclose": "adj_close",
    "volume": "volume",
    "dividends": "dividend",
    "dividend": "dividend",
    "stocksplits": "split_ratio",
    "splitratio": "split_ratio",
}
_REQUIRED = ("trade_date", "open", "high", "low", "close", "volume")


def _key(header: str) -> str:
    return "".join(ch for ch in header.lower() if ch.isalnum())


def read_price_csv(path: Path) -> pd.DataFrame:
    """One ticker's file as canonical columns; errors name the file and the line."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise SourceError(f"{path}: cannot be read as CSV: {exc}") from exc
    renamed = {}
    for header in raw.columns:
        canonical = _HEADERS.get(_key(header))
        if canonical and canonical not in renamed.values():
            renamed[header] = canonical
    raw = raw.rename(columns=renamed)[list(renamed.values())]
    missing = [c for c in _REQUIRED if c not in raw.columns]
    if missing:
        raise SourceError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
    # A file with action columns is as traded; one without is taken as already adjusted (its
    # Adj Close, when present, scales the bars) and carries no actions.
    if "adj_close" not in raw.columns or has_actions(raw.columns):
        raw["adj_close"] = raw["close"]
    if "dividend" not in raw.columns:
        raw["dividend"] = "0"
    if "split_ratio" not in raw.columns:
        raw["split_ratio"] = "1"
    raw["dividend"] = raw["dividend"].replace("", "0")
    # Yahoo-style exports write 0 for "no split"; stored as the neutral ratio 1.
    raw["split_ratio"] = raw["split_ratio"].replace({"": "1", "0": "1", "0.0": "1"})
    dates = pd.to_datetime(raw["trade_date"], format="%Y-%m-%d", errors="coerce")
    _fail_on_first(path, dates.isna(), raw["trade_date"], "is not an ISO date (YYYY-MM-DD)")
    raw["trade_date"] = dates
    for col in ("open", "high", "low", "close", "adj_close", "volume", "dividend", "split_ratio"):
        values = pd.to_numeric(raw[col].replace("", "nan"), errors="coerce")
        bad = values.isna() & ~raw[col].isin(["", "nan", "NaN", "null"])
        _fail_on_first(path, bad, raw[col], f"{col} is not a number")
        raw[col] = values
    _fail_on_first(path, dates.duplicated(), raw["trade_date"].astype(str), "repeats a date")
    factor = raw["adj_close"] / raw["close"]
    for col in ("open", "high", "low", "close"):
        raw[col] = raw[col] * factor
    return raw.drop(columns="adj_close")


def has_actions(columns) -> bool:
    """Whether a file's (canonical) columns carry corporate actions: then it is as traded."""
    return "split_ratio" in columns or "dividend" in columns


def _fail_on_first(path: Path, bad: pd.Series, values: pd.Series, what: str) -> None:
    if bad.any():
        pos = int(bad.to_numpy().nonzero()[0][0])
        raise SourceError(f"{path}: line {pos + 2}: {values.iloc[pos]!r} {what}")


class CsvSource(PriceSource):
    name = "csv"

    def __init__(self, folder: Path | None):
        if folder is None:
            raise SourceError("csv: set STOCK_ASSETS_CSV_DIR to the folder of <TICKER>.csv files")
        if not folder.is_dir():
            raise SourceError(f"csv: {folder} is not a folder")
        self.folder = folder

    @cached_property
    def files(self) -> dict[str, Path]:
        found = {p.stem: p for p in sorted(self.folder.iterdir()) if p.suffix.lower() == ".csv"}
        if not found:
            raise SourceError(f"csv: no .csv files in {self.folder}")
        return found

    @property
    def default_tickers(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.files)

    @property
    def default_start(self) -> str:  # type: ignore[override]
        return min(self._frame(t)["trade_date"].min() for t in self.files).date().isoformat()

    def basis(self, ticker: str) -> str:
        """A file with Stock Splits/Dividends columns is as traded; one without is taken as
        already adjusted (by its Adj Close when it has one) and carries no actions."""
        header = pd.read_csv(self.files[ticker], nrows=0).columns
        if has_actions({_HEADERS.get(_key(h)) for h in header}):
            return "as traded"
        return "adjusted by the source"

    def _frame(self, ticker: str) -> pd.DataFrame:
        cache = self.__dict__.setdefault("_cache", {})
        if ticker not in cache:
            cache[ticker] = read_price_csv(self.files[ticker])
        return cache[ticker]

    def check(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> None:
        super().check(tickers, start, end)
        unknown = [t for t in tickers if t not in self.files]
        if unknown:
            raise SourceError(f"csv: no file for ticker(s) {', '.join(unknown)} in {self.folder}")
        for ticker in tickers:
            days = self._frame(ticker)["trade_date"]
            first, last = days.min().date(), days.max().date()
            if start < first or end > last:
                raise SourceError(
                    f"csv: {start}..{end} is outside what {self.files[ticker].name} has "
                    f"({first}..{last})"
                )

    def fetch(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        frames = []
        for ticker in tickers:
            frame = self._frame(ticker)
            days = frame["trade_date"]
            frame = frame[(days >= pd.Timestamp(start)) & (days <= pd.Timestamp(end))]
            frames.append(frame.assign(ticker=ticker))
        return conform(pd.concat(frames, ignore_index=True))
