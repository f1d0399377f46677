"""How forecasts are judged: price errors next to naive and always-up, skill, DM test, coverage.

All inputs are aligned arrays over (window, ticker): predicted and actual next-session log
returns and the last close. Prices are last_close × exp(return).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

# A model whose predicted returns vary less than this share of the actual returns' spread is,
# for all practical purposes, the naive model.
NAIVE_EQUIVALENT_RATIO = 0.05


def conformal_quantile(residuals: np.ndarray, coverage: float = 0.8) -> float:
    """Split-conformal half-width: the ⌈(n+1)·coverage⌉-th smallest absolute residual."""
    r = np.sort(np.abs(np.asarray(residuals, dtype=float).ravel()))
    r = r[~np.isnan(r)]
    if len(r) == 0:
        raise ValueError("no calibration residuals")
    k = min(len(r), math.ceil((len(r) + 1) * coverage))
    return float(r[k - 1])


def price_metrics(pred_ret: np.ndarray, actual_ret: np.ndarray, last_close: np.ndarray) -> dict:
    actual = last_close * np.exp(actual_ret)
    pred = last_close * np.exp(pred_ret)
    err = pred - actual
    up = actual_ret > 0
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mape": float(np.mean(np.abs(err) / actual) * 100),
        "directional_accuracy": float(np.mean((pred_ret > 0) == up)),
    }


def diebold_mariano(err_model: np.ndarray, err_base: np.ndarray) -> float:
    """Two-sided p-value that absolute errors differ (horizon 1, normal approximation)."""
    d = np.abs(err_model) - np.abs(err_base)
    d = d[~np.isnan(d)]
    if len(d) < 3 or np.var(d) == 0:
        return 1.0
    stat = np.mean(d) / math.sqrt(np.var(d, ddof=1) / len(d))
    return float(2 * (1 - stats.norm.cdf(abs(stat))))


def compare(
    pred_ret: np.ndarray,
    actual_ret: np.ndarray,
    last_close: np.ndarray,
    half_width: float | None = None,
    drift: float = 1e-4,
) -> dict[str, dict]:
    """Metric table: the model, naive (return 0) and always-up (a positive drift)."""
    pred_ret, actual_ret, last_close = (
        np.asarray(a, float).ravel() for a in (pred_ret, actual_ret, last_close)
    )
    keep = ~np.isnan(actual_ret)
    pred_ret, actual_ret, last_close = pred_ret[keep], actual_ret[keep], last_close[keep]
    naive = np.zeros_like(pred_ret)
    up = np.full_like(pred_ret, max(drift, 1e-4))
    table = {
        "model": price_metrics(pred_ret, actual_ret, last_close),
        "naive": price_metrics(naive, actual_ret, last_close),
        "always_up": price_metrics(up, actual_ret, last_close),
    }
    actual = last_close * np.exp(actual_ret)
    model_err = last_close * np.exp(pred_ret) - actual
    naive_err = last_close - actual
    for name in table:
        table[name]["skill"] = 1 - table[name]["mae"] / table["naive"]["mae"]
    table["model"]["dm_pvalue_vs_naive"] = diebold_mariano(model_err, naive_err)
    spread = float(np.std(actual_ret))
    table["model"]["naive_equivalent"] = bool(
        spread == 0 or np.std(pred_ret) < NAIVE_EQUIVALENT_RATIO * spread
    )
    if half_width is not None:
        lower, upper = pred_ret - half_width, pred_ret + half_width
        inside = (actual_ret >= lower) & (actual_ret <= upper)
        table["model"]["coverage"] = float(np.mean(inside))
        table["model"]["interval_width_pct"] = float(np.mean(np.exp(upper) - np.exp(lower)) * 100)
    table["model"]["n"] = len(pred_ret)
    return table
