"""Splits, scalers and sequence windows for one dataset run. Pure: numpy and pandas only.

Splits run in time order — train | validation | calibration | test — separated by gaps of at
least the longest sequence length, so no window's input reaches back into an earlier split's
labels. Scalers are fit on train rows only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stock_assets.settings import RetrainingSettings

SPLITS: tuple[str, ...] = ("train", "validation", "calibration", "test")
GAP = "gap"


@dataclass(frozen=True)
class SplitConfig:
    validation: float = RetrainingSettings.validation
    calibration: float = RetrainingSettings.calibration
    test: float = RetrainingSettings.test
    gap: int = RetrainingSettings.gap  # between splits; ≥ the longest sequence length searched
    min_rows: int = 40  # fewest sessions any split may have

    @classmethod
    def of(cls, settings: RetrainingSettings) -> SplitConfig:
        return cls(settings.validation, settings.calibration, settings.test, settings.gap)


def assign_splits(dates: Sequence, config: SplitConfig) -> pd.Series:
    """Split label per session date (sorted, unique): one of SPLITS, or 'gap'."""
    dates = sorted(set(dates))
    n = len(dates)
    usable = n - 3 * config.gap
    sizes = {
        name: int(usable * getattr(config, name)) for name in ("validation", "calibration", "test")
    }
    sizes["train"] = usable - sum(sizes.values())
    short = {k: v for k, v in sizes.items() if v < config.min_rows}
    if usable <= 0 or short:
        raise ValueError(
            f"{n} sessions are too few for the splits (gap {config.gap}, at least "
            f"{config.min_rows} sessions each; would get {sizes}): choose a later cutoff"
        )
    labels = []
    for i, name in enumerate(SPLITS):
        labels += [name] * sizes[name]
        if i < len(SPLITS) - 1:
            labels += [GAP] * config.gap
    return pd.Series(labels, index=pd.Index(dates, name="trade_date"), name="split")


def fit_scalers(train: pd.DataFrame, features: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """{ticker: {feature: [mean, std]}} from train rows only; a constant feature gets std 1."""
    out: dict[str, dict[str, list[float]]] = {}
    for ticker, rows in train.groupby("ticker"):
        stats = {}
        for f in features:
            mean, std = float(rows[f].mean()), float(rows[f].std(ddof=0))
            stats[f] = [mean, std if std > 1e-12 else 1.0]
        out[str(ticker)] = stats
    return out


def apply_scalers(
    frame: pd.DataFrame, scalers: dict[str, dict[str, list[float]]], features: Sequence[str]
) -> pd.DataFrame:
    unknown = sorted(set(frame["ticker"]) - set(scalers))
    if unknown:
        raise ValueError(f"no scaler for ticker(s) {unknown}")
    tickers = list(scalers)
    stats = np.array([[scalers[t][f] for f in features] for t in tickers], dtype=float)
    row = frame["ticker"].map({t: i for i, t in enumerate(tickers)}).to_numpy()
    values = frame[list(features)].to_numpy(dtype=float)
    out = frame.copy()
    out[list(features)] = (values - stats[row, :, 0]) / stats[row, :, 1]
    return out


def scaled_frame(
    processed: pd.DataFrame, scalers: pd.DataFrame
) -> tuple[pd.DataFrame, list[str], dict[str, dict[str, list[float]]]]:
    """processed_features rows scaled with a dataset run's scalers rows; the features kept and
    the per-ticker parameters."""
    features = list(scalers["features"].iloc[0])
    params = {row.ticker: row.params for row in scalers.itertuples()}
    return apply_scalers(processed, params, features), features, params


def split_bounds(frame: pd.DataFrame) -> pd.DataFrame:
    """First and last session and session count of each split, in split order."""
    bounds = frame.groupby("split")["trade_date"].agg(["min", "max", "nunique"])
    return bounds.reindex([s for s in SPLITS if s in bounds.index])


@dataclass
class Panel:
    """Features as a dense [date, ticker, feature] cube, with targets and closes beside it."""

    dates: np.ndarray
    tickers: list[str]
    x: np.ndarray  # float32 [D, T, F]
    y: np.ndarray  # float32 [D, T] next-session log return (NaN where unknown)
    close: np.ndarray  # float64 [D, T] adjusted close on the date
    split: np.ndarray | None = None  # split label per date, when the frame had one

    def ends(self, split: str, seq_len: int) -> np.ndarray:
        """Ends of full-history windows inside `split` whose targets are all known."""
        assert self.split is not None, "this panel was built from a frame without splits"
        ends, y = self.windows(seq_len, self.split == split)
        return ends[~np.isnan(y).any(axis=1)]

    def windows(self, seq_len: int, end_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices of window ends allowed by `end_mask` with a full history, and their targets."""
        ends = np.flatnonzero(end_mask)
        ends = ends[ends >= seq_len - 1]
        return ends, self.y[ends]

    def inputs(self, ends: np.ndarray, seq_len: int) -> np.ndarray:
        offsets = np.arange(-seq_len + 1, 1)
        return self.x[ends[:, None] + offsets[None, :]]  # [N, L, T, F]


def build_panel(
    frame: pd.DataFrame, features: Sequence[str], tickers: Sequence[str] | None = None
) -> Panel:
    """Align tickers on common dates; a ticker missing a date another has is an error."""
    tickers = list(tickers) if tickers is not None else sorted(frame["ticker"].unique())
    missing = sorted(set(tickers) - set(frame["ticker"]))
    if missing:
        raise ValueError(f"no rows for ticker(s) {missing}")
    frame = frame[frame["ticker"].isin(tickers)]
    counts = frame.groupby("trade_date")["ticker"].nunique()
    ragged = counts[counts != len(tickers)]
    if len(ragged):
        day = ragged.index[0]
        have = set(frame.loc[frame["trade_date"] == day, "ticker"])
        raise ValueError(
            f"ticker(s) {sorted(set(tickers) - have)} have no row on {day} while others do "
            f"({len(ragged)} such dates): a ticker with gaps cannot join a cross-ticker panel"
        )
    frame = frame.sort_values(["trade_date", "ticker"])
    dates = np.array(sorted(frame["trade_date"].unique()))
    d, t, f = len(dates), len(tickers), len(features)
    order = {k: i for i, k in enumerate(tickers)}
    frame = frame.assign(_t=frame["ticker"].map(order)).sort_values(["trade_date", "_t"])
    x = frame[list(features)].to_numpy(dtype=np.float32).reshape(d, t, f)
    y = (
        frame["target"].to_numpy(dtype=np.float32).reshape(d, t)
        if "target" in frame
        else np.full((d, t), np.nan, np.float32)
    )
    close = frame["close_adj"].to_numpy(dtype=float).reshape(d, t)
    split = frame["split"].to_numpy().reshape(d, t)[:, 0] if "split" in frame else None
    return Panel(dates=dates, tickers=list(tickers), x=x, y=y, close=close, split=split)


def select_features(
    train: pd.DataFrame, features: Sequence[str], threshold: float | None
) -> list[str]:
    """Drop a feature whose |correlation| with an earlier kept one exceeds `threshold`.

    Decided on train rows only; None keeps every feature.
    """
    if threshold is None:
        return list(features)
    corr = train[list(features)].corr().abs()
    kept: list[str] = []
    for f in features:
        if all(corr.loc[f, k] <= threshold for k in kept):
            kept.append(f)
    return kept
