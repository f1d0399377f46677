"""Data-quality rules for daily prices. Pure functions; the asset checks report what they find."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

EXAMINE = 0.20  # day-over-day changes beyond ±20 % are examined (a 3:2 split is −33 %)
UNIT_ERROR_RATIO = 50.0  # a total return beyond 50× either way is a unit error
# Split ratios seen in practice, and how close a total return must come to one (or its
# inverse) to be taken for an unrecorded split. 5:4 and 4:3 are left out on purpose: NVDA's
# +24 % (2023-05-25) and META's −26 % (2022-02-03) were real moves; AAPL's −51.9 % crash
# (2000-09-29) is 3.8 % from a 2:1 split.
SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 10.0, 15.0, 20.0, 25.0, 50.0, 1.5, 2.5)
SPLIT_TOLERANCE = 0.025


def _split_like(ratio: np.ndarray) -> np.ndarray:
    """Whether each ratio is within SPLIT_TOLERANCE of a common split or reverse split."""
    near = np.zeros(len(ratio), dtype=bool)
    for s in SPLIT_RATIOS:
        for r in (s, 1 / s):
            near |= np.abs(ratio * r - 1) <= SPLIT_TOLERANCE
    return near


def price_jumps(
    frame: pd.DataFrame,
    previous: pd.DataFrame | None = None,
    actions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Large day-over-day changes of the as-traded close, classified against the actions.

    `previous` holds each ticker's last stored row before `frame` (so a one-day run is checked
    against yesterday); `actions` the splits and dividends on the frame's days. Each change is
    judged on the holder's total return s·(P + D)/P_prev. kind: `split` when an action
    explains a large raw move (passes), `move` when the total return itself is large but no
    split ratio (a real move such as META's −26 % or NVDA's +24 %: metadata only),
    `unrecorded_split` when it is a split-like ratio (2, 3, 3/2, 10, 1/2 …) no action explains,
    `unit_error` when it is beyond 50× either way (both block).
    """
    cols = ["trade_date", "ticker", "close"]
    rows = frame[cols]
    if previous is not None and len(previous):
        rows = pd.concat([previous[cols], rows], ignore_index=True)
    rows = rows.sort_values(["ticker", "trade_date"]).reset_index(drop=True)
    if actions is not None and len(actions):
        keyed = actions.set_index(["trade_date", "ticker"])
        keys = pd.MultiIndex.from_frame(rows[["trade_date", "ticker"]])
        split = keyed["split_ratio"].reindex(keys).fillna(1.0).to_numpy(float)
        dividend = keyed["dividend"].reindex(keys).fillna(0.0).to_numpy(float)
    else:
        split, dividend = np.ones(len(rows)), np.zeros(len(rows))
    grouped = rows.groupby("ticker", sort=False)
    before = grouped["close"].shift(1).to_numpy(float)
    close = rows["close"].to_numpy(float)
    raw = close / before
    total = split * (close + dividend) / before
    out = rows.assign(
        prev_date=grouped["trade_date"].shift(1).to_numpy(),
        raw_ratio=raw,
        total_return=total,
        split_ratio=split,
        dividend=dividend,
    )
    out = out[~np.isnan(raw)]
    large = lambda r: np.abs(np.log(r)) > np.log(1 + EXAMINE)  # noqa: E731
    out = out[large(out["raw_ratio"]) | large(out["total_return"])]
    r = out["total_return"].to_numpy(float)
    kind = np.where(
        np.abs(np.log(r)) > np.log(UNIT_ERROR_RATIO),
        "unit_error",
        np.where(
            large(r) & _split_like(r),
            "unrecorded_split",
            np.where(large(r), "move", "split"),
        ),
    )
    return out.assign(kind=kind)[
        [
            "trade_date",
            "prev_date",
            "ticker",
            "raw_ratio",
            "split_ratio",
            "dividend",
            "total_return",
            "kind",
        ]
    ].reset_index(drop=True)


BLOCKING_JUMPS = ("unrecorded_split", "unit_error")


def jump_kind(total_return: float) -> str:
    """price_jumps' kind of one total return: unit_error, unrecorded_split, move or ok."""
    r = np.array([total_return], dtype=float)
    log = np.abs(np.log(r))[0]
    if log > np.log(UNIT_ERROR_RATIO):
        return "unit_error"
    if log > np.log(1 + EXAMINE):
        return "unrecorded_split" if _split_like(r)[0] else "move"
    return "ok"


RESTATEMENT_TOLERANCE = 0.005  # a stored close the vendor now reports ≥ 0.5 % apart


def restatements(fetched: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """Sessions the source now reports in another basis than the one stored (both as traded):
    an unrecorded split or a vendor restatement. Columns: ticker, trade_date, ratio."""
    on = ["trade_date", "ticker"]
    both = fetched[[*on, "close"]].merge(stored[[*on, "close"]], on=on, suffixes=("", "_stored"))
    both["ratio"] = both["close"].astype(float) / both["close_stored"].astype(float)
    bad = both[np.abs(both["ratio"] - 1) > RESTATEMENT_TOLERANCE]
    return bad[["ticker", "trade_date", "ratio"]].sort_values(on[::-1]).reset_index(drop=True)


def restatement_message(bad: pd.DataFrame) -> str:
    parts = []
    for ticker, rows in bad.groupby("ticker"):
        days = rows["trade_date"]
        parts.append(
            f"{ticker} {days.min()}…{days.max()} ×{rows['ratio'].median():.4g} of what is stored"
        )
    return (
        "unrecorded split or vendor restatement: the source now reports "
        + "; ".join(parts)
        + ". Nothing was written; re-ingest with `stock-assets restate --ticker T --start D`."
    )


def calendar_gaps(
    stored: pd.DataFrame, sessions: Sequence[dt.date], tickers: Sequence[str]
) -> pd.DataFrame:
    """(trade_date, ticker) pairs the calendar expects for configured tickers but are not stored."""
    expected = pd.MultiIndex.from_product([list(sessions), list(tickers)])
    have = pd.MultiIndex.from_frame(stored[["trade_date", "ticker"]])
    missing = expected.difference(have)
    return pd.DataFrame(list(missing), columns=["trade_date", "ticker"])
