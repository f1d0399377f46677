"""The naive baseline's 80 % interval, served and scored next to production's every day, so
the performance log says whether the model's interval earns its place. Pure: pandas.

It is the naive model's own machinery made causal per day: tomorrow = today, ± q·σ̂ₜ, where q
is the split-conformal quantile of the ticker's last NAIVE_WINDOW scores |r|/σ̂ known by the
close of the as-of day (no ACI, so it shows what adaptation adds)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from stock_assets.ml.conformal import TARGET_MISCOVERAGE
from stock_assets.ml.volatility import next_session_sigma, recent_rows, sigma_memory

NAIVE_WINDOW = 250  # sessions of scores behind each day's q: about one trading year


def naive_half_widths(
    prices: pd.DataFrame,
    days: list,
    window: int = NAIVE_WINDOW,
    alpha: float = TARGET_MISCOVERAGE,
) -> pd.Series:
    """Half-width (log return) of the naive interval as of each (trade_date, ticker) whose
    trade_date is in `days`; NaN until a ticker has `window` scores. Reads only the rows the
    days' windows and σ̂ need (equal to the whole frame's to 1e-12), not every row."""
    prices = recent_rows(prices, min(days), window + 1 + sigma_memory())
    sigma = next_session_sigma(prices)  # sorted by ticker, then trade_date
    day = sigma.index.get_level_values("trade_date").to_numpy()
    ticker = sigma.index.get_level_values("ticker").to_numpy()
    # the rows in σ̂'s order (the same stable sort)
    log_close = np.log(prices.sort_values(["ticker", "trade_date"])["close"].to_numpy(float))
    s = sigma.to_numpy()
    same = np.r_[False, ticker[1:] == ticker[:-1]]
    # the score of the return into row t, made with the σ̂ of row t-1: known at t's close
    score = np.full(len(s), np.nan)
    score[1:] = np.abs(np.diff(log_close)) / s[:-1]
    score[~same] = np.nan
    # a window holds only rows from `window` + 1 dates before the first day on, of one ticker
    dates = np.sort(pd.unique(day))
    cut = dates[max(0, int(np.searchsorted(dates, min(days))) - window - 1)]
    kept = day >= cut
    segment = np.cumsum(~same | (kept != np.r_[True, kept[:-1]]))  # a ticker's rows from cut on
    wanted = np.flatnonzero(pd.Series(day).isin(set(days)).to_numpy())
    first = wanted - window + 1
    ok = (first >= 0) & (segment[np.maximum(first, 0)] == segment[wanted]) & (day[wanted] >= cut)
    half = np.full(len(wanted), np.nan)
    # the conformal rank among `window` scores, as pandas' rolling quantile (interpolation
    # "higher") picks it: the same float arithmetic, so the same order statistic
    rank = math.ceil((window + 1) * (1 - alpha))
    x = (rank - 1) / (window - 1) * (window - 1)
    k = int(x) + (x != int(x))
    views = np.lib.stride_tricks.sliding_window_view(score, window) if len(s) >= window else None
    rows = np.flatnonzero(ok)
    for chunk in np.array_split(rows, max(1, len(rows) // 4096)):  # ≤ 8 MB of windows at once
        if not len(chunk):
            continue
        scores = views[first[chunk]]
        full = ~np.isnan(scores).any(axis=1)  # min_periods = window
        q = np.full(len(chunk), np.nan)
        q[full] = np.partition(scores[full], k, axis=1)[:, k]
        half[chunk] = q * s[wanted[chunk]]
    index = pd.MultiIndex.from_arrays([day[wanted], ticker[wanted]], names=["trade_date", "ticker"])
    return pd.Series(half, index=index, name="half")


def with_naive_interval(preds: pd.DataFrame, half: pd.Series) -> pd.DataFrame:
    """Add naive_lower / naive_upper (prices) around each row's last close."""
    keys = pd.MultiIndex.from_frame(preds[["as_of_date", "ticker"]])
    h = half.reindex(keys).to_numpy(float)
    last = preds["last_close"].to_numpy(float)
    return preds.assign(naive_lower=last * np.exp(-h), naive_upper=last * np.exp(h))
