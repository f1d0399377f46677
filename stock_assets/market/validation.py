"""Validate fetched rows before anything is written: a bad row never enters raw_prices.

Pure. `validate` splits a fetched frame into the rows to store and the rows to reject, each
with the rule it broke; the blocking data-quality rules live here, and the asset checks only
report what was rejected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stock_assets.market.adjust import actions_of
from stock_assets.market.quality import BLOCKING_JUMPS, jump_kind, price_jumps

PRICES = ["open", "high", "low", "close"]
VALUES = [*PRICES, "volume", "dividend", "split_ratio"]

# Row rules, in the order they are reported (a row breaking several shows the first).
DUPLICATE = "duplicate key"
MISSING_VALUE = "missing value"
NOT_FINITE = "infinite value"
NON_POSITIVE = "price <= 0"
HIGH_LOW = "high < max(open, close)"
LOW_HIGH = "low > min(open, close)"
NEGATIVE_VOLUME = "volume < 0"
BAD_ACTION = "dividend < 0 or split_ratio <= 0"
ROW_RULES = (
    DUPLICATE,
    MISSING_VALUE,
    NOT_FINITE,
    NON_POSITIVE,
    HIGH_LOW,
    LOW_HIGH,
    NEGATIVE_VOLUME,
    BAD_ACTION,
)
# Ratio rules, judged on the total return against each ticker's last good close.
JUMP_RULES = {
    "unrecorded_split": "split-like ratio no recorded split explains",
    "unit_error": "unit error: total return beyond 50x",
}


@dataclass(frozen=True)
class Validated:
    good: pd.DataFrame  # the fetched columns, rows that may be stored
    rejected: pd.DataFrame  # the fetched columns + rule, detail
    moves: pd.DataFrame  # price_jumps of the good rows: real moves, explained splits (metadata)


def _row_rules(frame: pd.DataFrame) -> pd.Series:
    """The first row rule each row breaks ("" when none). NumPy: this runs on every ingest."""
    v = frame[VALUES].to_numpy(dtype="float64", na_value=np.nan)
    o, h, low, c, volume, dividend, split = v.T
    with np.errstate(invalid="ignore"):
        masks = [
            frame.duplicated(["trade_date", "ticker"], keep=False).to_numpy(),
            np.isnan(v).any(axis=1),
            np.isinf(v).any(axis=1),
            (v[:, :4] <= 0).any(axis=1),
            h < np.maximum(o, c),
            low > np.minimum(o, c),
            volume < 0,
            (dividend < 0) | (split <= 0),
        ]
    rule = np.select(masks, list(ROW_RULES), default="")
    return pd.Series(rule.astype(object), index=frame.index)


def _jump_rules(
    frame: pd.DataFrame, previous: pd.DataFrame | None
) -> tuple[pd.Series, pd.DataFrame]:
    """The ratio rule each row breaks against its ticker's last *good* close ("" when none),
    and the frame's price_jumps.

    A vectorized pass finds the tickers with any blocking ratio; only those are walked row by
    row, so a unit error on one day rejects that day alone, while a basis change nobody
    recorded (an unrecorded split) rejects every row after it until the history is restated.
    """
    rule = pd.Series("", index=frame.index, dtype=object)
    jumps = price_jumps(frame, previous, actions_of(frame))
    flagged = set(jumps.loc[jumps["kind"].isin(BLOCKING_JUMPS), "ticker"])
    if not flagged:
        return rule, jumps
    last_good: dict[str, float] = {}
    if previous is not None and len(previous):
        last_good = previous.set_index("ticker")["close"].astype(float).to_dict()
    rows = frame[frame["ticker"].isin(flagged)].sort_values(["ticker", "trade_date"])
    for ticker, group in rows.groupby("ticker", sort=False):
        before, basis_lost = last_good.get(ticker), False
        for idx, r in zip(group.index, group.itertuples(index=False), strict=True):
            total = None if before is None else r.split_ratio * (r.close + r.dividend) / before
            kind = "" if total is None else jump_kind(total)
            if basis_lost or kind in BLOCKING_JUMPS:
                # after an unrecorded split the basis is unknown: no later row is comparable
                basis_lost = basis_lost or kind == "unrecorded_split"
                rule[idx] = JUMP_RULES["unrecorded_split" if basis_lost else kind]
            else:
                before = r.close
    return rule, jumps


def _values_detail(rows: pd.DataFrame) -> list[str]:
    """Each rejected row's fetched values as text (NaN and inf included)."""
    cols = ["open", "high", "low", "close", "volume"]
    return [
        ", ".join(f"{c}={v:g}" for c, v in zip(cols, values, strict=True))
        for values in rows[cols].astype("float64").itertuples(index=False)
    ]


def validate(frame: pd.DataFrame, previous: pd.DataFrame | None = None) -> Validated:
    """Split fetched rows (PRICE_COLUMNS + source, ingested_at) into good and rejected.

    `previous` holds each ticker's last stored row before the frame, so a one-day run is judged
    against yesterday. Row rules first; ratios are then judged on the rows that passed them.
    """
    rule = _row_rules(frame)
    passed = rule == ""
    rule[passed], moves = _jump_rules(frame[passed], previous)
    bad = rule != ""
    rejected = frame[bad].assign(rule=rule[bad], detail=_values_detail(frame[bad]))
    good = frame[~bad].reset_index(drop=True)
    if bad.any():  # judged again without the rejected rows: what passed, real moves and splits
        moves = price_jumps(good, previous, actions_of(good))
    return Validated(good, rejected.reset_index(drop=True), moves)


def missing_keys(
    unanswered: pd.DataFrame, rejected: pd.DataFrame, good: pd.DataFrame
) -> pd.DataFrame:
    """(trade_date, ticker, reason) of every session a ticker will have no stored row for."""
    refused = rejected[["trade_date", "ticker"]].assign(reason="rejected: " + rejected["rule"])
    both = pd.concat([unanswered[["trade_date", "ticker", "reason"]], refused], ignore_index=True)
    both = both.drop_duplicates(["trade_date", "ticker"])
    stored = pd.MultiIndex.from_frame(good[["trade_date", "ticker"]])
    keep = ~pd.MultiIndex.from_frame(both[["trade_date", "ticker"]]).isin(stored)
    return both[keep].sort_values(["trade_date", "ticker"], ignore_index=True)


def missing_shares(
    missing: pd.DataFrame, sessions: Sequence[dt.date], n_tickers: int
) -> dict[dt.date, float]:
    """The share of configured tickers each session misses."""
    counts = missing.groupby("trade_date")["ticker"].nunique()
    return {day: float(counts.get(day, 0)) / n_tickers for day in sessions}
