"""Turn a source's answer into the rows of raw_prices for a run of trading days. No Dagster.

The calendar decides: a weekday the exchange was closed is an empty partition; a session with
no data for a ticker is recorded as missing (which, why) and the other tickers are stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from stock_assets.market.adjust import actions_of
from stock_assets.market.calendars import sessions_between
from stock_assets.market.sources.base import PRICE_COLUMNS, PriceSource, SourceError, empty_prices

COLLECTED_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "source", "ingested_at")
BAR_COLUMNS = ("trade_date", "ticker", "open", "high", "low", "close", "volume")


def _stamp(frame: pd.DataFrame, source: str, now: dt.datetime) -> pd.DataFrame:
    out = frame.copy()
    out["source"] = source
    out["ingested_at"] = pd.Series(pd.Timestamp(now), index=out.index, dtype="datetime64[ns, UTC]")
    return out[list(COLLECTED_COLUMNS)]


def split_collected(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """raw_prices rows (bars as traded) and corporate_actions rows (with when they were learned)
    of a collected frame."""
    bars = frame[[*BAR_COLUMNS, "source", "ingested_at"]].reset_index(drop=True)
    bars["volume"] = bars["volume"].astype("Int64")  # validated: finite counts
    actions = actions_of(frame)
    known = frame.set_index(["trade_date", "ticker"])
    keys = pd.MultiIndex.from_frame(actions[["trade_date", "ticker"]])
    actions = actions.assign(
        source=known["source"].reindex(keys).to_numpy(),
        known_at=known["ingested_at"].reindex(keys).to_numpy(),
    )
    actions["known_at"] = pd.to_datetime(actions["known_at"], utc=True)
    return bars, actions


@dataclass(frozen=True)
class Collected:
    """A source's answer for a span of sessions: its rows, and the (session, ticker) pairs it
    did not answer with the reason (the ticker's error, or no row)."""

    frame: pd.DataFrame  # COLLECTED_COLUMNS, not yet validated
    missing: pd.DataFrame  # trade_date, ticker, reason


def collect_prices(
    source: PriceSource,
    tickers: Sequence[str],
    first_day: dt.date,
    last_day: dt.date,
    exchange: str = "XNYS",
    now: dt.datetime | None = None,
) -> Collected:
    """The source's rows for every session in [first_day, last_day], and what it left out.

    A request that cannot be answered at all (no tickers, dates outside the source) raises; a
    ticker that fails or a session without its row is recorded, and the other tickers go on.
    """
    now = now or dt.datetime.now(dt.UTC)
    if not tickers:
        raise SourceError(f"{source.name}: the ticker list is empty")
    sessions = sessions_between(first_day, last_day, exchange)
    if not sessions:
        return Collected(_stamp(empty_prices(), source.name, now), _no_missing())
    source.check(tickers, sessions[0], sessions[-1])
    frame, failed = source.fetch_each(tickers, sessions[0], sessions[-1])
    frame = frame[frame["ticker"].isin(tickers) & frame["trade_date"].isin(sessions)]
    expected = pd.MultiIndex.from_product([sessions, list(tickers)], names=["trade_date", "ticker"])
    have = pd.MultiIndex.from_frame(frame[["trade_date", "ticker"]])
    gaps = expected.difference(have).to_frame(index=False)
    gaps["reason"] = [
        failed.get(t, f"{source.name} returned no row for a session of {exchange}")
        for t in gaps["ticker"]
    ]
    frame = frame.sort_values(["trade_date", "ticker"], ignore_index=True)
    return Collected(_stamp(frame, source.name, now), gaps)


def _no_missing() -> pd.DataFrame:
    return pd.DataFrame({"trade_date": [], "ticker": [], "reason": []}, dtype=object)


def partition_notes(
    keys: Sequence[str],
    frame: pd.DataFrame,
    missing: pd.DataFrame,
    n_tickers: int,
    sessions: set[dt.date],
    exchange: str,
) -> dict[str, dict]:
    """What each trading_days partition of a run holds: rows, tickers, whether it was a session,
    and which tickers it misses (why)."""
    by_day = frame.groupby("trade_date").size()
    gaps = {day: rows for day, rows in missing.groupby("trade_date")}
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
        if day in gaps:
            notes[key]["missing_tickers"] = dict(
                zip(gaps[day]["ticker"], gaps[day]["reason"], strict=True)
            )
    return notes
