"""Data-quality rules for daily prices. Pure functions; the asset checks report what they find."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from stock_assets.market.calendars import sessions_between

JUMP_LIMIT = 0.40  # a close-to-close move beyond ±40 % needs explaining
UNIT_ERROR_RATIO = 50.0  # a day-over-day ratio beyond 50× either way is a unit error


def ohlc_violations(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows breaking OHLC consistency, each with the rule it breaks."""
    price_cols = ["open", "high", "low", "close", "adj_close"]
    rules = {
        "NaN value": frame[[*price_cols, "volume"]].isna().any(axis=1),
        "price <= 0": (frame[price_cols] <= 0).any(axis=1),
        "high < max(open, close)": frame["high"] < frame[["open", "close"]].max(axis=1),
        "low > min(open, close)": frame["low"] > frame[["open", "close"]].min(axis=1),
        "volume < 0": frame["volume"].fillna(0) < 0,
    }
    bad = []
    for rule, mask in rules.items():
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            bad.append(frame.loc[mask, ["trade_date", "ticker"]].assign(rule=rule))
    if not bad:
        return pd.DataFrame(columns=["trade_date", "ticker", "rule"])
    return pd.concat(bad, ignore_index=True).sort_values(["trade_date", "ticker"])


def price_jumps(frame: pd.DataFrame, previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """Close-to-close moves beyond the limit, classified.

    `previous` holds each ticker's last stored row before `frame` (so a one-day run is checked
    against yesterday). kind: `split` when the adjusted close does not move with the raw close
    (passes), `move` when it does (a genuine move: a warning), `unit_error` when the raw ratio
    is beyond 50× either way and the adjusted close does not explain it (an error).
    """
    cols = ["trade_date", "ticker", "close", "adj_close"]
    rows = frame[cols]
    if previous is not None and len(previous):
        rows = pd.concat([previous[cols], rows], ignore_index=True)
    rows = rows.sort_values(["ticker", "trade_date"])
    grouped = rows.groupby("ticker", sort=False)
    raw = rows["close"] / grouped["close"].shift(1)
    adj = rows["adj_close"] / grouped["adj_close"].shift(1)
    out = rows.assign(
        prev_date=grouped["trade_date"].shift(1), raw_ratio=raw, adj_ratio=adj
    ).dropna(subset=["raw_ratio"])
    out = out[np.abs(out["raw_ratio"] - 1) > JUMP_LIMIT]
    adjusted_moves = np.abs(out["adj_ratio"] - 1) > JUMP_LIMIT
    unit = (np.abs(np.log(out["raw_ratio"])) > np.log(UNIT_ERROR_RATIO)) & adjusted_moves
    kind = np.where(unit, "unit_error", np.where(adjusted_moves, "move", "split"))
    return out.assign(kind=kind)[
        ["trade_date", "prev_date", "ticker", "raw_ratio", "adj_ratio", "kind"]
    ].reset_index(drop=True)


def calendar_gaps(
    stored: pd.DataFrame, sessions: Sequence[dt.date], tickers: Sequence[str]
) -> pd.DataFrame:
    """(trade_date, ticker) pairs the calendar expects for configured tickers but are not stored."""
    expected = pd.MultiIndex.from_product([list(sessions), list(tickers)])
    have = pd.MultiIndex.from_frame(stored[["trade_date", "ticker"]])
    missing = expected.difference(have)
    return pd.DataFrame(list(missing), columns=["trade_date", "ticker"])


def missing_in_window(
    prices: pd.DataFrame, tickers: Sequence[str], last: dt.date, exchange: str
) -> str | None:
    """A clear message when stored prices lack a session up to `last` for a ticker."""
    if prices.empty:
        return "raw_prices holds no rows for the configured tickers"
    expected = sessions_between(prices["trade_date"].min(), last, exchange)
    gaps = calendar_gaps(prices[["trade_date", "ticker"]], expected, tickers)
    if gaps.empty:
        return None
    shown = ", ".join(f"{r.ticker} on {r.trade_date}" for r in gaps.head(5).itertuples())
    return (
        f"raw_prices is missing {len(gaps)} row(s) in the prediction window ({shown}): "
        "materialize those raw_prices partitions first"
    )
