"""Scoring predictions once their target session has closed, and the rolling summary the
retraining sensor reads. Pure: pandas only."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from stock_assets.ml.conformal import coverage_band, winkler
from stock_assets.storage.schema import PERFORMANCE_COLUMNS

NAIVE_BOUNDS = ("naive_lower", "naive_upper")


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A float column, NaN throughout when the frame predates it."""
    if name in frame.columns:
        return frame[name].to_numpy(float)
    return np.full(len(frame), np.nan)


def score(predictions: pd.DataFrame, actual: pd.DataFrame) -> pd.DataFrame:
    """One row per prediction whose target_date has an actual close.

    predictions: daily_predictions rows; actual: trade_date, ticker, close.
    """
    joined = predictions.merge(
        actual.rename(columns={"trade_date": "target_date", "close": "actual_close"}),
        on=["target_date", "ticker"],
        how="inner",
    )
    err = joined["predicted_close"] - joined["actual_close"]
    moved = joined["actual_close"] - joined["last_close"]
    predicted_move = joined["predicted_close"] - joined["last_close"]
    out = pd.DataFrame(
        {
            "trade_date": joined["target_date"],
            "ticker": joined["ticker"],
            "as_of_date": joined["as_of_date"],
            "model_version": joined["model_version"].astype(str),
            "in_sample": joined["in_sample"].astype(bool),
            "last_close": joined["last_close"],
            "predicted_close": joined["predicted_close"],
            "lower": joined["lower"],
            "upper": joined["upper"],
            "actual_close": joined["actual_close"],
            "abs_error": err.abs(),
            "pct_error": (err.abs() / joined["actual_close"]) * 100,
            "naive_abs_error": moved.abs(),
            "direction_hit": (predicted_move > 0) == (moved > 0),
            "interval_hit": (joined["actual_close"] >= joined["lower"])
            & (joined["actual_close"] <= joined["upper"]),
            **{c: _column(joined, c) for c in NAIVE_BOUNDS},
        }
    )
    # NaN where a row has no naive interval (older rows, a ticker's first year)
    known = out["naive_lower"].notna() & out["naive_upper"].notna()
    hit = (out["actual_close"] >= out["naive_lower"]) & (out["actual_close"] <= out["naive_upper"])
    out["naive_interval_hit"] = hit.astype(object).where(known, None)
    return out[list(PERFORMANCE_COLUMNS)].sort_values(["trade_date", "ticker"], ignore_index=True)


def rolling_summary(rows: pd.DataFrame, sessions: list) -> dict[str, float | int]:
    """MAE, MAPE, directional accuracy, skill vs naive, interval coverage (hits, and the 95 %
    band an exact 80 % interval shows on as many rows) and interval score (per cent of the
    price) over the given sessions, out-of-sample rows only (in-sample ones never count)."""
    window = rows[rows["trade_date"].isin(set(sessions)) & ~rows["in_sample"].astype(bool)]
    n = len(window)
    if n == 0:
        return {"n": 0, "sessions": 0}
    naive_mae = float(window["naive_abs_error"].mean())
    mae = float(window["abs_error"].mean())
    low, high = coverage_band(n)
    return {
        "n": n,
        "sessions": int(window["trade_date"].nunique()),
        "mae": mae,
        "mape": float(window["pct_error"].mean()),
        "directional_accuracy": float(window["direction_hit"].mean()),
        "skill": float(1 - mae / naive_mae) if naive_mae > 0 else 0.0,
        "coverage": float(window["interval_hit"].mean()),
        "hits": int(window["interval_hit"].sum()),
        "coverage_band_low": low,
        "coverage_band_high": high,
        "interval_score_pct": float(np.nanmean(interval_score_pct(window))),
        **baseline_summary(window),
    }


def baseline_summary(window: pd.DataFrame) -> dict[str, float | int]:
    """The same figures for the baselines on the same rows: naive (MAE, its own 80 % interval:
    coverage and score, over the rows that have one) and always-up (direction)."""
    last = window["last_close"].to_numpy(float)
    actual = window["actual_close"].to_numpy(float)
    out: dict[str, float | int] = {
        "naive_mae": float(window["naive_abs_error"].mean()),
        "always_up_directional_accuracy": float(np.mean(actual > last)),
    }
    if "naive_interval_hit" not in window.columns:
        return out
    known = window["naive_lower"].notna().to_numpy() & window["naive_upper"].notna().to_numpy()
    if known.any():
        rows = window[known]
        naive = rows.assign(lower=rows["naive_lower"], upper=rows["naive_upper"])
        out["naive_n"] = int(known.sum())
        out["naive_coverage"] = float(rows["naive_interval_hit"].astype(bool).mean())
        out["naive_interval_score_pct"] = float(np.mean(interval_score_pct(naive)))
    return out


def interval_score_pct(rows: pd.DataFrame) -> np.ndarray:
    """Winkler score (α = 0.2) of each scored row in log-return × 100, so tickers of any
    price level add up."""
    last = rows["last_close"].to_numpy(float)
    return 100 * winkler(
        np.log(rows["lower"].to_numpy(float) / last),
        np.log(rows["upper"].to_numpy(float) / last),
        np.log(rows["actual_close"].to_numpy(float) / last),
    )


def summaries_by_session(
    rows: pd.DataFrame, sessions: list, all_sessions: list, window: int
) -> dict:
    """The rolling summary as of each session in `sessions` (a trailing `window` of sessions)."""
    ordered = sorted(all_sessions)
    position = {d: i for i, d in enumerate(ordered)}
    out = {}
    for day in sessions:
        i = position[day]
        out[day] = rolling_summary(rows, ordered[max(0, i - window + 1) : i + 1])
    return out


def prediction_rows(
    preds: pd.DataFrame,
    targets: dict,
    model_name: str,
    version: str,
    run_id: str | None,
    dataset_run_id: str | None,
    cutoff: dt.date | None,
) -> pd.DataFrame:
    """daily_predictions rows from a model's predictions: target session, model identity, and
    whether the as-of day is in the model's training sample (never scored then)."""
    frame = pd.DataFrame(
        {
            "as_of_date": preds["as_of_date"].to_numpy(),
            "target_date": [targets[d] for d in preds["as_of_date"]],
            "ticker": preds["ticker"].to_numpy(),
            "last_close": preds["last_close"].to_numpy(),
            "predicted_close": preds["predicted_close"].to_numpy(),
            "lower": preds["lower"].to_numpy(),
            "upper": preds["upper"].to_numpy(),
            "predicted_return": preds["predicted_return"].to_numpy(),
            "model_name": model_name,
            "model_version": version,
            "mlflow_run_id": run_id or "",
            "dataset_run_id": dataset_run_id or "",
            "in_sample": [cutoff is not None and d <= cutoff for d in preds["as_of_date"]],
            "served_by": preds["served_by"].to_numpy(),
            **{c: _column(preds, c) for c in NAIVE_BOUNDS},
        }
    )
    frame["created_at"] = pd.Timestamp(dt.datetime.now(dt.UTC))
    return frame.sort_values(["as_of_date", "ticker"], ignore_index=True)


def prediction_notes(
    keys: list[str], frame: pd.DataFrame, targets: dict, missing: pd.DataFrame | None = None
) -> dict[str, dict]:
    """What each daily_predictions partition of a run holds, and which tickers it lacks (why)."""
    gaps = {} if missing is None else {d: rows for d, rows in missing.groupby("as_of_date")}
    by_day = {d: rows for d, rows in frame.groupby("as_of_date")}  # once, not per key
    notes = {}
    for key in keys:
        day = dt.date.fromisoformat(key)
        rows = by_day.get(day, frame.iloc[0:0])
        notes[key] = {
            "rows": len(rows),
            "in_sample": bool(rows["in_sample"].any()) if len(rows) else False,
            "target_date": str(targets[day]) if day in targets else "",
        }
        if day in gaps:
            rows = gaps[day]
            notes[key]["missing_tickers"] = dict(zip(rows["ticker"], rows["reason"], strict=True))
    return notes


def in_traded_basis(preds: pd.DataFrame, traded: pd.DataFrame) -> pd.DataFrame:
    """Predictions computed on prices adjusted as of a later day, restated in the basis each
    as-of day traded in (returns are basis-free; closes and intervals are not)."""
    keys = pd.MultiIndex.from_frame(preds[["as_of_date", "ticker"]])
    close = traded.set_index(["trade_date", "ticker"])["close"].astype(float)
    scale = close.reindex(keys).to_numpy() / preds["last_close"].to_numpy(float)
    out = preds.copy()
    for col in ("last_close", "predicted_close", "lower", "upper", *NAIVE_BOUNDS):
        if col not in preds.columns:
            continue
        out[col] = preds[col].to_numpy(float) * scale
    return out
