"""Turn a source's answer into the rows of raw_prices for a run of trading days. No Dagster.

The calendar decides: a weekday the exchange was closed is an empty partition; a session with
no data for a ticker is an outage and fails the whole run, naming what is missing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd

from stock_assets.market.adjust import actions_of
from stock_assets.market.calendars import sessions_between
from stock_assets.market.sources.base import PRICE_COLUMNS, PriceSource, SourceError, empty_prices

COLLECTED_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "source", "ingested_at")
BAR_COLUMNS = ("trade_date", "ticker", "open", "high", "low", "close", "volume")


class MissingPrices(SourceError):
    """A session day without data for a ticker: an outage, not a holiday."""


def _stamp(frame: pd.DataFrame, source: str, now: dt.datetime) -> pd.DataFrame:
    out = frame.copy()
    out["source"] = source
    out["ingested_at"] = pd.Series(pd.Timestamp(now), index=out.index, dtype="datetime64[ns, UTC]")
    return out[list(COLLECTED_COLUMNS)]


def split_collected(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """raw_prices rows (bars as traded) and corporate_actions rows (with when they were learned)
    of a collected frame."""
    bars = frame[[*BAR_COLUMNS, "source", "ingested_at"]].reset_index(drop=True)
    actions = actions_of(frame)
    known = frame.set_index(["trade_date", "ticker"])
    keys = pd.MultiIndex.from_frame(actions[["trade_date", "ticker"]])
    actions = actions.assign(
        source=known["source"].reindex(keys).to_numpy(),
        known_at=known["ingested_at"].reindex(keys).to_numpy(),
    )
    actions["known_at"] = pd.to_datetime(actions["known_at"], utc=True)
    return bars, actions


def collect_prices(
    source: PriceSource,
    tickers: Sequence[str],
    first_day: dt.date,
    last_day: dt.date,
    exchange: str = "XNYS",
    now: dt.datetime | None = None,
) -> pd.DataFrame:
    """raw_prices rows for every session in [first_day, last_day], or an error naming the gap."""
    now = now or dt.datetime.now(dt.UTC)
    if not tickers:
        raise SourceError(f"{source.name}: the ticker list is empty")
    sessions = sessions_between(first_day, last_day, exchange)
    if not sessions:
        return _stamp(empty_prices(), source.name, now)
    source.check(tickers, sessions[0], sessions[-1])
    frame = source.fetch(tickers, sessions[0], sessions[-1])
    frame = frame[frame["ticker"].isin(tickers) & frame["trade_date"].isin(sessions)]
    dupes = frame.duplicated(["trade_date", "ticker"])
    if dupes.any():
        row = frame[dupes].iloc[0]
        raise SourceError(
            f"{source.name}: {int(dupes.sum())} duplicate rows, e.g. {row.ticker} on "
            f"{row.trade_date}"
        )
    expected = pd.MultiIndex.from_product([sessions, list(tickers)], names=["trade_date", "ticker"])
    have = pd.MultiIndex.from_frame(frame[["trade_date", "ticker"]])
    missing = expected.difference(have)
    if len(missing):
        shown = ", ".join(f"{t} on {d}" for d, t in list(missing)[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise MissingPrices(
            f"{source.name}: no prices for {shown}{more} — these are sessions of {exchange}, "
            "so this is an outage or a bad ticker, not a holiday; nothing was written"
        )
    frame = frame.sort_values(["trade_date", "ticker"], ignore_index=True)
    return _stamp(frame, source.name, now)


def partition_notes(
    keys: Sequence[str], frame: pd.DataFrame, n_tickers: int, sessions: set[dt.date], exchange: str
) -> dict[str, dict]:
    """What each trading_days partition of a run holds: rows, tickers, whether it was a session."""
    by_day = frame.groupby("trade_date").size()
    notes = {}
    for key in keys:
        day = dt.date.fromisoformat(key)
        notes[key] = {
            "rows": int(by_day.get(day, 0)),
            "tickers": n_tickers,
            "exchange_open": day in sessions,
        }
        if day not in sessions:
            notes[key]["note"] = f"{exchange} was closed: empty partition"
    return notes
