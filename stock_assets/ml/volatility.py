"""Causal next-session volatility per ticker: the scale of every interval. Pure: numpy/pandas.

EWMA: σ̂²ₜ₊₁ = λ·σ̂²ₜ + (1 − λ)·rₜ², the forecast for the session after t made from returns up
to t, with λ = 0.90 (a half-life of about 6.6 sessions). RiskMetrics' daily 0.94 follows a
volatility jump more slowly: on the sample indices (bench/intervals.py) 0.90 covered 0.73 in
Q4 2018 and 0.79 over the Sep 2008 – Jun 2009 crisis before adaptation, against 0.68 / 0.79 at
0.94 and 0.61 / 0.82 at 0.97, with a lower interval score in both. The recursion starts at each
ticker's first stored row (as features do) from the running mean square of its first returns,
so the influence of the start decays as λⁿ (below 1e-6 after 130 sessions).

GARCH(1,1) (the `arch` package) is the classical baseline: parameters fitted on a prefix, then
filtered forward with those parameters, so each forecast uses returns up to its own day only.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

EWMA_LAMBDA = 0.90
FLOOR = 1e-4  # a volatility below 0.01 % a day is a stale quote, not a calm market


def ewma_sigma(returns: np.ndarray, lam: float = EWMA_LAMBDA) -> np.ndarray:
    """σ̂ for the session after each return (same length). NaN returns leave σ̂ unchanged.

    Before any return is seen the forecast is NaN; the first few use the running mean square.
    The recursion runs as a linear filter (scipy's lfilter), not a Python loop: the daily cycle
    computes it over every ticker's whole history.
    """
    from scipy.signal import lfilter

    r = np.asarray(returns, dtype=float)
    out = np.full(len(r), np.nan)
    valid = ~np.isnan(r)
    sq = r[valid] ** 2
    if not len(sq):
        return out
    warm = min(round(1 / (1 - lam)), len(sq))  # 10 sessions at λ = 0.90
    var = np.empty(len(sq))
    var[:warm] = np.cumsum(sq[:warm]) / np.arange(1, warm + 1)
    if len(sq) > warm:  # v_t = λ·v_(t-1) + (1 − λ)·r_t², from the warm-up's last value
        var[warm:], _ = lfilter([1 - lam], [1, -lam], sq[warm:], zi=[lam * var[warm - 1]])
    sigma = np.maximum(np.sqrt(var), FLOOR)
    last = np.cumsum(valid) - 1  # each row's newest valid return (-1: none yet)
    seen = last >= 0
    out[seen] = sigma[last[seen]]
    return out


def next_session_sigma(prices: pd.DataFrame, lam: float = EWMA_LAMBDA) -> pd.Series:
    """σ̂ of the next session's log return as of each (trade_date, ticker) of adjusted prices.

    The same function serves training (calibration scores), serving, replay and scoring.
    """
    ordered = prices.sort_values(["ticker", "trade_date"])
    close = ordered["close"].to_numpy(float)
    ticker = ordered["ticker"].to_numpy()
    sigma = np.empty(len(ordered))
    starts = np.flatnonzero(np.r_[True, ticker[1:] != ticker[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    for a, b in zip(starts, ends, strict=True):
        r = np.r_[np.nan, np.diff(np.log(close[a:b]))]
        sigma[a:b] = ewma_sigma(r, lam)
    index = pd.MultiIndex.from_arrays(
        [pd.to_datetime(ordered["trade_date"]).dt.date.to_numpy(), ticker],
        names=["trade_date", "ticker"],
    )
    return pd.Series(sigma, index=index, name="sigma")


def sigma_memory(lam: float = EWMA_LAMBDA) -> int:
    """Rows σ̂ runs before the first forecast wanted so that its start's weight λⁿ is below
    1e-14: σ̂ from a frame's last rows then equals σ̂ from its first (306 rows at λ = 0.90)."""
    return math.ceil(math.log(1e-14) / math.log(lam))


def recent_rows(prices: pd.DataFrame, first_day, rows: int) -> pd.DataFrame:
    """The frame's rows from `rows` of its dates before `first_day` on (all when fewer)."""
    dates = np.sort(pd.unique(prices["trade_date"]))
    i = int(np.searchsorted(dates, first_day)) - rows
    return prices if i <= 0 else prices[prices["trade_date"] >= dates[i]]


def garch_sigma(returns: np.ndarray, fit_until: int) -> np.ndarray:
    """GARCH(1,1) σ̂ for the session after each return: fitted on returns[:fit_until], then
    filtered forward with those parameters (causal). Zero mean; log returns; a leading NaN (the
    first day has no return) stays NaN."""
    from arch import arch_model

    r = np.asarray(returns, dtype=float)
    lead = int(np.argmax(~np.isnan(r)))
    if np.isnan(r[lead:]).any():
        raise ValueError("GARCH needs a gap-free return series")
    model = arch_model(r[lead:] * 100, mean="Zero", vol="GARCH", p=1, q=1, rescale=False)
    fitted = model.fit(last_obs=max(fit_until - lead, 2), disp="off", show_warning=False)
    forecast = fitted.forecast(horizon=1, start=0, reindex=True, align="origin")
    out = np.full(len(r), np.nan)
    out[lead:] = np.maximum(np.sqrt(forecast.variance.to_numpy()[:, 0]) / 100, FLOOR)
    return out


def panel_garch(close: np.ndarray, fit_until: int) -> np.ndarray:
    """GARCH(1,1) σ̂ per [date, ticker], fitted on dates before `fit_until`."""
    r = panel_returns(close)
    return np.column_stack([garch_sigma(r[:, j], fit_until) for j in range(r.shape[1])])


def panel_sigma(close: np.ndarray, lam: float = EWMA_LAMBDA) -> np.ndarray:
    """σ̂ per [date, ticker] of a dense close panel (the training panel's `close`)."""
    r = panel_returns(close)
    return np.column_stack([ewma_sigma(r[:, j], lam) for j in range(close.shape[1])])


def panel_returns(close: np.ndarray) -> np.ndarray:
    """Log returns into each [date, ticker] (NaN on the first date)."""
    close = np.asarray(close, float)
    return np.vstack([np.full((1, close.shape[1]), np.nan), np.diff(np.log(close), axis=0)])
