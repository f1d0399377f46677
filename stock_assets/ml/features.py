"""Causal technical features from daily prices. Pure: no Dagster, no database.

Every value on day t uses prices up to t only; warm-up rows where an indicator is not yet
defined are dropped, never filled (the old system's ffill().bfill() leaked the future).
Indicators are computed on adjusted OHLC (`storage.prices.prices_until`, point in time) and
expressed scale-free (ratios, oscillators),
so one model can read several tickers. Recursive indicators (EMA, RSI, ATR, ADX, PSAR, OBV)
depend on where the series starts: training and serving both start at the ticker's first
stored row, so they agree exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

# The longest look-back of any feature: rows before it are warm-up and dropped.
WARMUP = 200

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


def _one_ticker(rows: pd.DataFrame) -> pd.DataFrame:
    h = rows["high"].to_numpy(dtype=float)
    low = rows["low"].to_numpy(dtype=float)
    c = rows["close"].to_numpy(dtype=float)
    v = rows["volume"].to_numpy(dtype=float)
    log_c = np.log(c)
    ret_1 = np.r_[np.nan, np.diff(log_c)]
    s = pd.Series
    out = {
        "ret_1": ret_1,
        "ret_5": log_c - s(log_c).shift(5).to_numpy(),
        "vol_20": s(ret_1).rolling(20).std().to_numpy(),
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
    out["obv_change_20"] = (obv - s(obv).shift(20).to_numpy()) / (20 * vol_sma)
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
    frame = pd.DataFrame(out, index=rows.index)
    # Volume-free series (indices with zero volume) give 0/0: defined as 0, not filled.
    volume_cols = ["obv_change_20", "volume_sma_20_ratio", "cmf_20", "force_index_13", "mfi_14"]
    no_volume = vol_sma == 0
    frame.loc[no_volume, volume_cols] = 0.0
    return frame[list(FEATURES)]


def next_log_return(prices: pd.DataFrame) -> pd.Series:
    """The target on day t: log(close[t+1] / close[t]) of adjusted prices (the total return);
    NaN on each ticker's last day."""
    ordered = prices.sort_values(["ticker", "trade_date"])
    log_c = np.log(ordered["close"].astype(float))
    return (log_c.groupby(ordered["ticker"]).shift(-1) - log_c).reindex(prices.index)


def compute_features(prices: pd.DataFrame) -> pd.DataFrame:
    """Features per (trade_date, ticker), warm-up rows dropped. Prices: raw_prices columns."""
    missing = {"trade_date", "ticker", "high", "low", "close", "volume"} - set(prices.columns)
    if missing:
        raise ValueError(f"prices lack column(s) {sorted(missing)}")
    frames = []
    for ticker, rows in prices.sort_values(["ticker", "trade_date"]).groupby("ticker", sort=True):
        rows = rows.reset_index(drop=True)
        if len(rows) <= WARMUP:
            raise ValueError(
                f"{ticker}: {len(rows)} rows of history, features need more than {WARMUP}"
            )
        feats = _one_ticker(rows)
        feats.insert(0, "ticker", ticker)
        feats.insert(0, "trade_date", rows["trade_date"].to_numpy())
        frames.append(feats.iloc[WARMUP:])
    out = pd.concat(frames, ignore_index=True)
    bad = out[list(FEATURES)].replace([np.inf, -np.inf], np.nan).isna()
    if bad.any().any():
        col = bad.any()[lambda x: x].index[0]
        row = out.loc[bad[col]].iloc[0]
        raise ValueError(
            f"feature {col} is NaN/inf for {row.ticker} on {row.trade_date} "
            "(a gap or a zero price in raw_prices?)"
        )
    return out
