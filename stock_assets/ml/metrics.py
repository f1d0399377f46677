"""How forecasts are judged: price errors next to naive and always-up, skill, DM test, and
the 80 % interval's coverage (with its binomial band) and interval score.

All inputs are aligned arrays over (window, ticker): predicted and actual next-session log
returns and the last close. Prices are last_close × exp(return).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from stock_assets.ml.conformal import TARGET_MISCOVERAGE, coverage_band, winkler

# A model whose predicted returns vary less than this share of the actual returns' spread is,
# for all practical purposes, the naive model.
NAIVE_EQUIVALENT_RATIO = 0.05


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


def diebold_mariano(err_model: np.ndarray, err_base: np.ndarray, one_sided: bool = False) -> float:
    """p-value that absolute errors differ (horizon 1, normal approximation). Two-sided by
    default; `one_sided`: the p-value that the model's errors are *smaller* than the base's."""
    d = np.abs(err_model) - np.abs(err_base)
    d = d[~np.isnan(d)]
    if len(d) < 3 or np.var(d) == 0:
        return 1.0 if not one_sided or len(d) < 3 or np.mean(d) >= 0 else 0.0
    stat = np.mean(d) / math.sqrt(np.var(d, ddof=1) / len(d))
    if one_sided:
        return float(stats.norm.cdf(stat))
    return float(2 * (1 - stats.norm.cdf(abs(stat))))


def interval_metrics(lower: np.ndarray, upper: np.ndarray, actual: np.ndarray) -> dict:
    """Coverage (with the 95 % band an exact 80 % interval would show on as many points), mean
    width and mean interval score, the last two in per cent of the price (log-return × 100)."""
    lower, upper, actual = (np.asarray(v, float).ravel() for v in (lower, upper, actual))
    keep = ~(np.isnan(lower) | np.isnan(upper) | np.isnan(actual))
    lower, upper, actual = lower[keep], upper[keep], actual[keep]
    n = len(actual)
    if n == 0:
        return {}
    band = coverage_band(n)
    return {
        "coverage": float(np.mean((actual >= lower) & (actual <= upper))),
        "coverage_band_low": band[0],
        "coverage_band_high": band[1],
        "interval_width_pct": float(np.mean(upper - lower) * 100),
        "interval_score_pct": float(np.mean(winkler(lower, upper, actual, TARGET_MISCOVERAGE)))
        * 100,
    }


def compare(
    pred_ret: np.ndarray,
    actual_ret: np.ndarray,
    last_close: np.ndarray,
    intervals: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    drift: float = 1e-4,
) -> dict[str, dict]:
    """Metric table: the model, naive (return 0) and always-up (a positive drift).

    `intervals`: per row of the table (model, naive, always_up, garch_naive), the 80 % interval
    as (lower, upper) log returns aligned with the inputs; a GARCH row holds interval metrics
    only."""
    pred_ret, actual_ret, last_close = (
        np.asarray(a, float).ravel() for a in (pred_ret, actual_ret, last_close)
    )
    keep = ~np.isnan(actual_ret)
    pred_ret, actual_ret, last_close = pred_ret[keep], actual_ret[keep], last_close[keep]
    intervals = {
        name: (np.asarray(lo, float).ravel()[keep], np.asarray(hi, float).ravel()[keep])
        for name, (lo, hi) in (intervals or {}).items()
    }
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
    for name, (lower, upper) in intervals.items():
        table.setdefault(name, {}).update(interval_metrics(lower, upper, actual_ret))
    table["model"]["n"] = len(pred_ret)
    return table


def regime_coverage(
    rows: pd.DataFrame, window: int = 21, after: int = 60
) -> dict[str, float | int | str | list]:
    """Coverage overall, per tercile of realized volatility and over the first `after`
    sessions from the largest volatility jump.

    rows: trade_date, ticker, actual_return (log), hit (bool). Realized volatility is the
    centred `window`-session standard deviation of each ticker's returns — known only after
    the fact, so it judges intervals without sharing their forecast. The jump is the session
    where the mean (over tickers) ratio of the next `window` sessions' volatility to the
    previous `window`'s is largest, among sessions with at least half a window either side.
    """
    if rows.empty:
        return {"n": 0}
    frame = rows.sort_values(["ticker", "trade_date"]).reset_index(drop=True)
    grouped = frame.groupby("ticker")["actual_return"]
    frame["vol"] = grouped.transform(lambda r: r.rolling(window, center=True, min_periods=5).std())
    # a jump needs half a window of evidence on each side: at the span's edges a few sessions
    # make noisy ratios (Q4 2018's "jump" fell on its 6th-last session without this)
    side = max(window // 2, 5)
    before = grouped.transform(lambda r: r.rolling(window, min_periods=side).std().shift())
    ahead = grouped.transform(lambda r: r[::-1].rolling(window, min_periods=side).std()[::-1])
    ratio = (ahead / before).groupby(frame["trade_date"]).mean().dropna()
    cuts = frame["vol"].quantile([1 / 3, 2 / 3]).to_numpy()
    tercile = np.digitize(frame["vol"].to_numpy(), cuts)
    out: dict = {
        "n": len(frame),
        "coverage": float(frame["hit"].mean()),
        "tercile_coverage": [float(frame["hit"][tercile == k].mean()) for k in range(3)],
    }
    out["tercile_spread"] = float(np.ptp(out["tercile_coverage"]))
    if len(ratio):
        jump = ratio.idxmax()
        days = sorted(frame["trade_date"].unique())
        first = days[days.index(jump) : days.index(jump) + after]
        after_rows = frame[frame["trade_date"].isin(first)]
        out.update(
            jump=str(jump),
            jump_ratio=float(ratio.max()),
            after_jump_sessions=len(first),
            after_jump_coverage=float(after_rows["hit"].mean()),
        )
    return out
