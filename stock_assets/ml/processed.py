"""One dataset run's training table: causal features, next-session target and split per session
and ticker, from the stored prices up to the cutoff. Pure: pandas and TA-Lib."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from stock_assets.ml.dataset import SplitConfig, assign_splits
from stock_assets.ml.features import FEATURES, compute_features, next_log_return


def check_history(prices: pd.DataFrame, tickers: list[str], cutoff: dt.date) -> None:
    """Every ticker has rows, and its last stored row is the cutoff session."""
    missing = sorted(set(tickers) - set(prices["ticker"]))
    if missing:
        raise ValueError(f"raw_prices has no rows up to {cutoff} for {missing}")
    last = prices.groupby("ticker")["trade_date"].max()
    stale = last[last != cutoff]
    if len(stale):
        raise ValueError(
            f"cutoff {cutoff} is not a stored session for {list(stale.index)} "
            f"(their last stored day: {stale.min()}); ingest raw_prices through the cutoff"
        )


def processed_frame(prices: pd.DataFrame, key: str, split_config: SplitConfig) -> pd.DataFrame:
    """processed_features rows of dataset run `key` (warm-up rows dropped)."""
    prices = prices.reset_index(drop=True)
    feats = compute_features(prices)
    idx = pd.MultiIndex.from_frame(feats[["trade_date", "ticker"]])
    by_key = prices.set_index(["trade_date", "ticker"])
    target = pd.Series(next_log_return(prices).to_numpy(), index=by_key.index)
    splits = assign_splits(feats["trade_date"].unique(), split_config)
    frame = pd.DataFrame(
        {
            "dataset_run_id": key,
            "trade_date": feats["trade_date"].to_numpy(),
            "ticker": feats["ticker"].to_numpy(),
            "split": splits.reindex(feats["trade_date"]).to_numpy(),
            "close_adj": by_key["close"].reindex(idx).to_numpy(),
            "target": target.reindex(idx).to_numpy(),
        }
    )
    for f in FEATURES:
        frame[f] = feats[f].to_numpy()
    return frame
