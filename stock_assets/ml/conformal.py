"""Volatility-scaled conformal intervals with online adaptation (ACI), and how intervals are
scored. Pure: numpy and scipy.

Score of a calibration point = |residual| / σ̂ (σ̂ from `ml/volatility.py`); the interval for a
new point is prediction ± q(αₜ)·σ̂ₜ, where q(α) is the conformal (1 − α) quantile of the
calibration scores. αₜ starts at the target miscoverage (0.2 for an 80 % interval) and moves
after each scored session as in Gibbs & Candès (2021): αₜ₊₁ = αₜ + γ·(α − errₜ).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

TARGET_MISCOVERAGE = 0.2  # the 80 % interval
# ACI may push αₜ below 1/(n+1): more coverage than the largest calibration score gives. The
# theory then draws an infinite interval; here q grows smoothly up to TAIL_LIMIT × the largest
# score (reached at αₜ ≤ 1/((n+1)·TAIL_LIMIT)), which in practice always covers, so αₜ comes
# back up and stays within [−γ, 1 + γ] as Gibbs & Candès' bound assumes.
TAIL_LIMIT = 10.0
STORED_SCORES = 512  # calibration scores kept in a bundle (quantiles of the full set beyond)


def scores(residuals: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Nonconformity scores |residual| / σ̂, NaNs dropped, sorted."""
    s = np.abs(np.asarray(residuals, float).ravel()) / np.asarray(sigma, float).ravel()
    s = np.sort(s[np.isfinite(s)])
    if len(s) == 0:
        raise ValueError("no calibration scores: every residual or volatility is missing")
    return s


def compact(sorted_scores: np.ndarray, keep: int = STORED_SCORES) -> list[float]:
    """At most `keep` scores that stand for the set: its evenly spaced order statistics."""
    s = np.asarray(sorted_scores, float)
    if len(s) <= keep:
        return [float(v) for v in s]
    return [float(v) for v in np.quantile(s, np.linspace(0, 1, keep), method="inverted_cdf")]


def quantile(sorted_scores: Sequence[float], alpha: np.ndarray | float) -> np.ndarray:
    """Conformal q(α): the ⌈(n + 1)(1 − α)⌉-th smallest score; 0 when α ≥ 1; beyond the
    largest score (α < 1/(n+1)) it grows as s_max / ((n+1)·α), up to TAIL_LIMIT · s_max."""
    s = np.asarray(sorted_scores, float)
    n = len(s)
    a = np.asarray(alpha, float)
    k = np.ceil((n + 1) * (1 - a)).astype(int)
    q = s[np.clip(k, 1, n) - 1]
    tail = s[-1] * np.minimum(TAIL_LIMIT, 1 / np.maximum((n + 1) * a, 1 / TAIL_LIMIT))
    return np.where(k <= 0, 0.0, np.where(k > n, tail, q))


def aci_step(alpha: np.ndarray, covered: np.ndarray, gamma: float) -> np.ndarray:
    """One ACI update per ticker; NaN `covered` (nothing scored) leaves αₜ as it is."""
    a = np.asarray(alpha, float)
    c = np.asarray(covered, float)
    err = 1.0 - c
    moved = a + gamma * (TARGET_MISCOVERAGE - err)
    return np.where(np.isnan(c), a, moved)


def winkler(
    lower: np.ndarray, upper: np.ndarray, actual: np.ndarray, alpha: float = TARGET_MISCOVERAGE
) -> np.ndarray:
    """Interval score (Winkler; Gneiting & Raftery 2007) per point, in the units of `actual`:
    width plus 2/α times the distance by which the outcome fell outside. Lower is better."""
    lo, hi, y = (np.asarray(v, float) for v in (lower, upper, actual))
    return (hi - lo) + (2 / alpha) * (np.maximum(lo - y, 0) + np.maximum(y - hi, 0))


def coverage_band(n: int, target: float = 1 - TARGET_MISCOVERAGE) -> tuple[float, float]:
    """Central 95 % range of the coverage an exactly calibrated interval shows on n points."""
    if n <= 0:
        return (0.0, 1.0)
    lo, hi = stats.binom.ppf([0.025, 0.975], n, target)
    return float(lo / n), float(hi / n)


def coverage_pvalue(hits: int, n: int, target: float = 1 - TARGET_MISCOVERAGE) -> float:
    """Two-sided exact binomial p-value of `hits` in `n` under the target coverage."""
    if n <= 0:
        return 1.0
    low = stats.binom.cdf(hits, n, target)
    high = stats.binom.sf(hits - 1, n, target)
    return float(min(1.0, 2 * min(low, high)))


def aci_bound(gamma: float, steps: int, alpha0: float = TARGET_MISCOVERAGE) -> float:
    """Gibbs & Candès' bound on |miss frequency − α| after `steps` updates (Prop. 4.1)."""
    return (max(alpha0, 1 - alpha0) + gamma) / (gamma * steps)


def gaussian_z(coverage: float = 1 - TARGET_MISCOVERAGE) -> float:
    """z of a central Gaussian interval (1.2816 for 80 %)."""
    return float(stats.norm.ppf(0.5 + coverage / 2))
