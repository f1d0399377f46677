"""Causal technical features from daily prices. Pure: no Dagster, no database.

Every value on day t uses prices up to t only; warm-up rows where an indicator is not yet
defined are dropped, never filled (the old system's ffill().bfill() leaked the future).
Indicators are computed on adjusted OHLC (`storage.prices.prices_until`, point in time) and
expressed scale-free (ratios, oscillators),
so one model can read several tickers. Recursive indicators (EMA, RSI, ATR, ADX, PSAR, OBV)
depend on where the series starts: training starts at the ticker's first stored row, serving
at most SERVING_HISTORY rows back, where every recursion has converged (tested to 1e-9).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import talib

# The longest look-back of any feature: rows before it are warm-up and dropped.
WARMUP = 200
# Rows per ticker the daily cycle reads: enough for every recursive indicator to forget where
# it started, so a tail gives the full history's features to 1e-9 (tested on the real sample).
# EMA(200) is the slowest: its start's weight decays as (1 − 2/201)ⁿ, below 1e-10 of a price
# after about 2,300 rows; PSAR, path-dependent, re-synchronised within 110 rows there.
SERVING_HISTORY = 3000

FEATURES: tuple[str, ...] = (
    "ret_1",
    "ret_5",
    "vol_20",
    "sma_50_ratio",
    "sma_200_ratio",
    "ema_50_ratio",
    "ema_200_ratio",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_pct_b",
    "bb_width",
    "atr_14_ratio",
    "obv_change_20",
    "mfi_14",
    "adx_14",
    "plus_di_14",
    "minus_di_14",
    "vwap_20_ratio",
    "psar_ratio",
    "stoch_k",
    "stoch_d",
    "cci_20",
    "willr_14",
    "donchian_pos_20",
    "keltner_pos_20",
    "roc_10",
    "volume_sma_20_ratio",
    "cmf_20",
    "force_index_13",
)


def _lag(x: np.ndarray, n: int) -> np.ndarray:
    return np.r_[np.full(n, np.nan), x[:-n]]


def _rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """Sample standard deviation over the last n values (NaN if any is NaN or n not reached)."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        out[n - 1 :] = np.lib.stride_tricks.sliding_window_view(x, n).std(axis=1, ddof=1)
    return out


def _one_ticker(h: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Every feature for one ticker's rows, [row, FEATURES]: numpy and TA-Lib only (no pandas
    per ticker; the daily cycle runs this for every ticker)."""
    log_c = np.log(c)
    ret_1 = np.r_[np.nan, np.diff(log_c)]
    out = {
        "ret_1": ret_1,
        "ret_5": log_c - _lag(log_c, 5),
        "vol_20": _rolling_std(ret_1, 20),
        "sma_50_ratio": c / talib.SMA(c, 50) - 1,
        "sma_200_ratio": c / talib.SMA(c, 200) - 1,
        "ema_50_ratio": c / talib.EMA(c, 50) - 1,
        "ema_200_ratio": c / talib.EMA(c, 200) - 1,
        "rsi_14": talib.RSI(c, 14) / 100,
    }
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    out.update(macd=macd / c, macd_signal=signal / c, macd_hist=hist / c)
    upper, middle, lower = talib.BBANDS(c, 20, 2, 2)
    out.update(bb_pct_b=(c - lower) / (upper - lower), bb_width=(upper - lower) / middle)
    atr = talib.ATR(h, low, c, 14)
    out["atr_14_ratio"] = atr / c
    obv = talib.OBV(c, v)
    vol_sma = talib.SMA(v, 20)
    out["obv_change_20"] = (obv - _lag(obv, 20)) / (20 * vol_sma)
    out["mfi_14"] = talib.MFI(h, low, c, v, 14) / 100
    out["adx_14"] = talib.ADX(h, low, c, 14) / 100
    out["plus_di_14"] = talib.PLUS_DI(h, low, c, 14) / 100
    out["minus_di_14"] = talib.MINUS_DI(h, low, c, 14) / 100
    typical = (h + low + c) / 3
    vwap = talib.SUM(typical * v, 20) / talib.SUM(v, 20)
    out["vwap_20_ratio"] = c / vwap - 1
    out["psar_ratio"] = c / talib.SAR(h, low, 0.02, 0.2) - 1
    k, d = talib.STOCH(h, low, c, 14, 3, 0, 3, 0)
    out.update(stoch_k=k / 100, stoch_d=d / 100)
    out["cci_20"] = talib.CCI(h, low, c, 20) / 100
    out["willr_14"] = talib.WILLR(h, low, c, 14) / 100
    hi20, lo20 = talib.MAX(h, 20), talib.MIN(low, 20)
    out["donchian_pos_20"] = (c - lo20) / (hi20 - lo20)
    ema20 = talib.EMA(c, 20)
    atr20 = talib.ATR(h, low, c, 20)
    out["keltner_pos_20"] = (c - ema20) / (2 * atr20)
    out["roc_10"] = talib.ROC(c, 10) / 100
    out["volume_sma_20_ratio"] = v / vol_sma - 1
    mf_volume = np.where(h > low, ((c - low) - (h - c)) / np.where(h > low, h - low, 1), 0) * v
    out["cmf_20"] = talib.SUM(mf_volume, 20) / talib.SUM(v, 20)
    force = np.r_[np.nan, np.diff(c)] * v
    out["force_index_13"] = talib.EMA(np.nan_to_num(force, nan=0.0), 13) / (c * vol_sma)
    # Volume-free series (indices with zero volume) give 0/0: defined as 0, not filled.
    no_volume = vol_sma == 0
    for col in ("obv_change_20", "volume_sma_20_ratio", "cmf_20", "force_index_13", "mfi_14"):
        out[col][no_volume] = 0.0
    return np.column_stack([out[f] for f in FEATURES])


def next_log_return(prices: pd.DataFrame) -> pd.Series:
    """The target on day t: log(close[t+1] / close[t]) of adjusted prices (the total return);
    NaN on each ticker's last day."""
    ordered = prices.sort_values(["ticker", "trade_date"])
    log_c = np.log(ordered["close"].astype(float))
    return (log_c.groupby(ordered["ticker"]).shift(-1) - log_c).reindex(prices.index)


def compute_features(prices: pd.DataFrame, since: dt.date | None = None) -> pd.DataFrame:
    """Features per (trade_date, ticker), warm-up rows dropped. Prices: raw_prices columns.

    `since`: return only rows on or after it (the recursions still run from each ticker's first
    row, so the values are those of the full frame); serving needs a few rows, not thousands.
    """
    missing = {"trade_date", "ticker", "high", "low", "close", "volume"} - set(prices.columns)
    if missing:
        raise ValueError(f"prices lack column(s) {sorted(missing)}")
    ordered = prices.sort_values(["ticker", "trade_date"], ignore_index=True)
    ticker = ordered["ticker"].to_numpy()
    day = ordered["trade_date"].to_numpy()
    cols = {k: ordered[k].to_numpy(dtype=float) for k in ("high", "low", "close", "volume")}
    starts = np.flatnonzero(np.r_[True, ticker[1:] != ticker[:-1]]) if len(ordered) else []
    ends = np.r_[starts[1:], len(ordered)] if len(ordered) else []
    values, keep = [], []
    for a, b in zip(starts, ends, strict=True):
        if b - a <= WARMUP:
            raise ValueError(
                f"{ticker[a]}: {b - a} rows of history, features need more than {WARMUP}"
            )
        first = a + WARMUP
        if since is not None:
            first = max(first, a + int(np.searchsorted(day[a:b], since)))
        if first == b:
            continue
        block = _one_ticker(*(cols[k][a:b] for k in ("high", "low", "close", "volume")))
        values.append(block[first - a :])
        keep.append(np.arange(first, b))
    rows = np.concatenate(keep) if keep else np.array([], dtype=int)
    matrix = np.vstack(values) if values else np.empty((0, len(FEATURES)))
    out = pd.DataFrame(matrix, columns=list(FEATURES))
    out.insert(0, "ticker", ticker[rows])
    out.insert(0, "trade_date", day[rows])
    bad = ~np.isfinite(matrix)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(
            f"feature {FEATURES[j]} is NaN/inf for {out.ticker[i]} on {out.trade_date[i]} "
            "(a gap or a zero price in raw_prices?)"
        )
    return out
