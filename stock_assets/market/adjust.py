"""One price basis through splits and dividends, point in time. Pure: pandas and numpy.

`raw_prices` holds prices as traded and `corporate_actions` the splits and cash dividends on
their ex-dates. Adjusting as of a date A multiplies every price before an ex-date e ≤ A by

    k_e = P_e / (s_e · (P_e + D_e))

(P_e the as-traded close on e, s_e new shares per old share, D_e the cash dividend per new
share), so the adjusted return across e is the holder's true total return
s_e · (P_e + D_e) / P_{e-1}, dividends reinvested at the ex-date close. Volumes are multiplied
by s_e. Actions after A are not known as of A and change nothing, so a dataset run with cutoff
C reads the same prices whatever was ingested after C.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PRICE_FIELDS = ("open", "high", "low", "close")
ACTION_COLUMNS = ("trade_date", "ticker", "split_ratio", "dividend")


def empty_actions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trade_date": pd.Series([], dtype=object),
            "ticker": pd.Series([], dtype=object),
            "split_ratio": pd.Series([], dtype=float),
            "dividend": pd.Series([], dtype=float),
        }
    )


def actions_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a source frame (split_ratio, dividend per day) that carry an action."""
    has = (frame["split_ratio"] != 1.0) | (frame["dividend"] != 0.0)
    if not has.any():
        return empty_actions()
    return frame.loc[has, list(ACTION_COLUMNS)].reset_index(drop=True)


def _factors(prices: pd.DataFrame, actions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `prices` (sorted by ticker, trade_date): the price and volume multipliers."""
    n = len(prices)
    if not len(actions):  # nothing to scale (the usual day): no per-ticker sums
        return np.ones(n), np.ones(n)
    log_k, log_s = np.zeros(n), np.zeros(n)
    keys = pd.MultiIndex.from_frame(prices[["trade_date", "ticker"]])
    acts = actions.set_index(["trade_date", "ticker"])
    missing = acts.index.difference(keys)
    if len(missing):
        day, ticker = missing[0]
        raise ValueError(
            f"corporate action of {ticker} on {day} has no price row that day: "
            "its adjustment factor needs the ex-date close"
        )
    pos = keys.get_indexer(acts.index)
    close = prices["close"].to_numpy(float)[pos]
    s = acts["split_ratio"].to_numpy(float)
    d = acts["dividend"].to_numpy(float)
    log_k[pos] = np.log(close) - np.log(s * (close + d))
    log_s[pos] = np.log(s)
    tickers = prices["ticker"].to_numpy()

    def after(values: np.ndarray) -> np.ndarray:
        # sum over the same ticker's rows strictly after each row
        out = np.empty(n)
        frame = pd.DataFrame({"t": tickers, "v": values})
        total = frame.groupby("t", sort=False)["v"].transform("sum").to_numpy()
        upto = frame.groupby("t", sort=False)["v"].cumsum().to_numpy()
        out[:] = total - upto
        return out

    return np.exp(after(log_k)), np.exp(after(log_s))


def adjust(prices: pd.DataFrame, actions: pd.DataFrame) -> pd.DataFrame:
    """Prices adjusted with `actions` (all of them: pass only those known as of the date wanted).

    Rows keep their order; the output is sorted by ticker and trade_date like the input must be
    for the actions' effect to run backwards in time.
    """
    ordered = prices.sort_values(["ticker", "trade_date"], kind="stable").reset_index(drop=True)
    price, volume = _factors(ordered, actions)
    out = ordered.copy()
    for col in PRICE_FIELDS:
        if col in out:
            out[col] = out[col].to_numpy(float) * price
    if "volume" in out:
        out["volume"] = out["volume"].to_numpy(float) * volume
    return out


def in_previous_basis(close: pd.Series, split_ratio: pd.Series, dividend: pd.Series) -> pd.Series:
    """A session's close in the basis of the session before it: what one share held the day
    before is worth at this close, dividend included (s · (P + D))."""
    return split_ratio.fillna(1.0) * (close + dividend.fillna(0.0))
