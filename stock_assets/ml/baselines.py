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
    sigma = next_session_sigma(prices)
    frame = sigma.reset_index().sort_values(["ticker", "trade_date"], ignore_index=True)
    close = (
        prices.assign(trade_date=pd.to_datetime(prices["trade_date"]).dt.date)
        .set_index(["trade_date", "ticker"])["close"]
        .astype(float)
    )
    log_close = np.log(close.reindex(pd.MultiIndex.from_frame(frame[["trade_date", "ticker"]])))
    same = frame["ticker"].eq(frame["ticker"].shift())
    # the score of the return into row t, made with the σ̂ of row t-1: known at t's close
    realized = np.where(same, log_close.to_numpy() - np.roll(log_close.to_numpy(), 1), np.nan)
    made_with = frame["sigma"].shift().where(same).to_numpy()
    frame["score"] = np.abs(realized) / made_with
    dates = np.sort(frame["trade_date"].unique())
    start = max(0, int(np.searchsorted(dates, min(days))) - window - 1)
    frame = frame[frame["trade_date"] >= dates[start]]  # only the windows the days need
    rank = math.ceil((window + 1) * (1 - alpha))  # conformal rank among `window` scores
    level = (rank - 1) / (window - 1)
    q = frame.groupby("ticker", sort=False)["score"].transform(
        lambda s: s.rolling(window, min_periods=window).quantile(level, interpolation="higher")
    )
    frame["half"] = q * frame["sigma"]
    wanted = frame[frame["trade_date"].isin(set(days))]
    return wanted.set_index(["trade_date", "ticker"])["half"]


def with_naive_interval(preds: pd.DataFrame, half: pd.Series) -> pd.DataFrame:
    """Add naive_lower / naive_upper (prices) around each row's last close."""
    keys = pd.MultiIndex.from_frame(preds[["as_of_date", "ticker"]])
    h = half.reindex(keys).to_numpy(float)
    last = preds["last_close"].to_numpy(float)
    return preds.assign(naive_lower=last * np.exp(-h), naive_upper=last * np.exp(h))
