"""The interval machinery on its own: causal volatility, conformal quantiles, ACI, scores."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from stock_assets.ml.adaptive import adapt, realized_returns
from stock_assets.ml.baselines import NAIVE_WINDOW, naive_half_widths, with_naive_interval
from stock_assets.ml.bundle import NAIVE, Bundle, with_interval
from stock_assets.ml.conformal import (
    TARGET_MISCOVERAGE,
    aci_bound,
    aci_step,
    coverage_pvalue,
    quantile,
    scores,
    winkler,
)
from stock_assets.ml.volatility import ewma_sigma, garch_sigma, next_session_sigma


def _garch_returns(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r, var = np.empty(n), 1e-4
    for t in range(n):
        r[t] = np.sqrt(var) * rng.standard_normal()
        var = 2e-6 + 0.1 * r[t] ** 2 + 0.88 * var
    return r


def test_volatility_forecast_is_causal():
    """σ̂ as of day t uses returns up to t only: a prefix of the data gives the same values."""
    days = pd.bdate_range("2018-01-01", periods=300).date
    r = _garch_returns(300)
    prices = pd.DataFrame({"trade_date": days, "ticker": "A", "close": 100 * np.exp(np.cumsum(r))})
    full = next_session_sigma(prices)
    for cut in (40, 150, 299):
        prefix = next_session_sigma(prices.iloc[:cut])
        np.testing.assert_array_equal(prefix.to_numpy(), full.to_numpy()[:cut])
    g_full = garch_sigma(np.r_[np.nan, r[1:]], fit_until=200)
    g_prefix = garch_sigma(np.r_[np.nan, r[1:250]], fit_until=200)
    np.testing.assert_allclose(g_prefix, g_full[:250], rtol=1e-9)


def test_ewma_follows_a_volatility_jump():
    rng = np.random.default_rng(0)
    r = np.r_[0.01 * rng.standard_normal(300), 0.03 * rng.standard_normal(100)]
    sigma = ewma_sigma(r)
    assert 0.007 < np.median(sigma[100:300]) < 0.013
    assert 0.022 < np.median(sigma[340:]) < 0.038  # caught up within ~40 sessions


def test_scaled_scores_cover_each_volatility_tercile():
    """|residual| / σ̂ scores give an interval that covers ~80 % in calm and in stress, where a
    constant half-width covers too much in calm and too little in stress."""
    r = _garch_returns(6000)
    sigma = np.r_[np.nan, ewma_sigma(r)[:-1]]  # σ̂ made the day before each return
    cal, test = slice(100, 3000), slice(3000, 6000)
    q = quantile(scores(r[cal], sigma[cal]), TARGET_MISCOVERAGE)
    constant = quantile(np.sort(np.abs(r[cal])), TARGET_MISCOVERAGE)
    held_scaled = np.abs(r[test]) <= q * sigma[test]
    held_constant = np.abs(r[test]) <= constant
    terciles = np.digitize(sigma[test], np.quantile(sigma[test], [1 / 3, 2 / 3]))
    scaled = [held_scaled[terciles == k].mean() for k in range(3)]
    fixed = [held_constant[terciles == k].mean() for k in range(3)]
    assert max(scaled) - min(scaled) < 0.06
    assert max(fixed) - min(fixed) > 0.15


def test_aci_reaches_the_target_frequency_within_its_bound():
    """Gibbs & Candès: whatever the data, the miss frequency of T steps is within
    (max(α₁, 1 − α₁) + γ) / (γT) of α — here on scores whose scale triples half-way."""
    rng = np.random.default_rng(5)
    cal = np.sort(np.abs(rng.standard_normal(500)))
    stream = np.abs(rng.standard_normal(4000)) * np.r_[np.ones(2000), 3 * np.ones(2000)]
    for gamma in (0.005, 0.02, 0.05):
        alpha, misses = np.array([TARGET_MISCOVERAGE]), 0
        for s in stream:
            covered = float(s <= quantile(cal, alpha)[0])
            misses += 1 - covered
            alpha = aci_step(alpha, np.array([covered]), gamma)
        assert abs(misses / len(stream) - TARGET_MISCOVERAGE) <= aci_bound(gamma, len(stream))
    # without adaptation the same stream misses far more often
    static = np.mean(stream > quantile(cal, TARGET_MISCOVERAGE))
    assert static > 0.4


def test_aci_step_leaves_unscored_tickers_alone():
    alpha = aci_step(np.array([0.2, 0.2, 0.2]), np.array([1.0, 0.0, np.nan]), 0.01)
    np.testing.assert_allclose(alpha, [0.202, 0.192, 0.2])


def test_winkler_and_coverage_test():
    assert winkler(np.array([-1.0]), np.array([1.0]), np.array([0.0]))[0] == 2.0
    # 0.5 outside an interval of width 2: 2 + 2/0.2 · 0.5
    assert winkler(np.array([-1.0]), np.array([1.0]), np.array([1.5]))[0] == pytest.approx(7.0)
    assert coverage_pvalue(80, 100) > 0.5
    assert coverage_pvalue(60, 100) < 1e-3
    assert coverage_pvalue(97, 100) < 1e-3


def _prices(days, closes: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"trade_date": d, "ticker": t, "close": c}
            for t, cs in closes.items()
            for d, c in zip(days, cs, strict=True)
        ]
    )


def test_adapt_moves_each_ticker_on_its_own_outcome_and_resumes_from_state():
    """A held interval narrows the next one (α up), a missed one widens it; a run per day from
    the stored state writes exactly what one run over the range writes."""
    days = [dt.date(2024, 1, d) for d in (2, 3, 4, 5)]
    prices = _prices(days, {"A": [100, 100.1, 100.2, 100.1], "B": [100, 110, 99, 120]})
    bundle = Bundle(kind=NAIVE, tickers=["A", "B"], half_width=0.02, scores=[0.5, 1.0, 1.5, 2.0])
    rows = prices.assign(
        as_of_date=prices["trade_date"],
        last_close=prices["close"],
        predicted_return=0.0,
        predicted_close=prices["close"],
        sigma=0.01,
    )
    preds = with_interval(bundle, rows, TARGET_MISCOVERAGE).assign(served_by="model")
    previous = {d: p for p, d in zip([None, *days], days, strict=False)}
    realized = realized_returns(prices)
    whole, state = adapt(preds, {"model": bundle}, realized, state_seed(), previous, 0.05)
    a = state[state["ticker"] == "A"]["alpha"].to_numpy()
    b = state[state["ticker"] == "B"]["alpha"].to_numpy()
    np.testing.assert_allclose(a, [0.2, 0.21, 0.22, 0.23])  # tiny moves: held
    np.testing.assert_allclose(b, [0.2, 0.16, 0.12, 0.08])  # 10 % moves: missed
    assert (whole[whole["ticker"] == "B"]["upper_return"].diff().dropna() >= 0).all()
    seed, parts = state_seed(), []
    for day in days:
        out, st = adapt(
            preds[preds["as_of_date"] == day], {"model": bundle}, realized, seed, previous, 0.05
        )
        parts.append(out)
        seed = pd.concat([f for f in (seed, st) if len(f)]).groupby("ticker").tail(1)
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole.reset_index(drop=True))


def state_seed() -> pd.DataFrame:
    return pd.DataFrame(columns=["trade_date", "ticker", "alpha", "lower_return", "upper_return"])


def test_naive_baseline_interval_is_causal_and_covers():
    """The naive baseline's q on day t uses returns known at t's close only (a prefix gives the
    same half-widths), needs a full window, and its interval covers ~80 % out of sample."""
    n = 1200
    days = list(pd.bdate_range("2015-01-01", periods=n).date)
    r = _garch_returns(n, seed=5)
    prices = pd.DataFrame({"trade_date": days, "ticker": "A", "close": 100 * np.exp(np.cumsum(r))})
    full = naive_half_widths(prices, days)
    assert full.iloc[:NAIVE_WINDOW].isna().all() and full.iloc[NAIVE_WINDOW + 1 :].notna().all()
    for cut in (400, 700):
        prefix = naive_half_widths(prices.iloc[:cut], days[:cut])
        np.testing.assert_allclose(prefix.to_numpy(), full.to_numpy()[:cut], rtol=1e-12)
    one_day = naive_half_widths(prices, [days[900]])  # reads its last 851 rows only
    assert one_day.iloc[0] == pytest.approx(full.iloc[900], rel=1e-12)
    preds = pd.DataFrame(
        {"as_of_date": days[:-1], "ticker": "A", "last_close": prices["close"][:-1]}
    )
    banded = with_naive_interval(preds, full)
    nxt = prices["close"].to_numpy()[1:]
    held = (banded["naive_lower"] <= nxt) & (nxt <= banded["naive_upper"])
    scored = banded["naive_lower"].notna().to_numpy()
    assert abs(held[scored].mean() - 0.8) < 0.05


def _ewma_by_loop(r: np.ndarray, lam: float = 0.9) -> np.ndarray:
    """The recursion written out, as the filter must reproduce it."""
    out, var, seen, total = np.full(len(r), np.nan), np.nan, 0, 0.0
    for t, x in enumerate(r):
        if not np.isnan(x):
            seen += 1
            if seen <= 10:
                total += x * x
                var = total / seen
            else:
                var = lam * var + (1 - lam) * x * x
        if seen:
            out[t] = max(np.sqrt(var), 1e-4)
    return out


def test_ewma_filter_equals_the_recursion_with_gaps_and_warm_up():
    r = _garch_returns(3000, seed=11)
    r[[0, 5, 6, 400, 2999]] = np.nan  # no return yet, gaps inside the warm-up and later
    r[1000:1003] = 0.0  # a stale quote: the floor
    np.testing.assert_allclose(ewma_sigma(r), _ewma_by_loop(r), rtol=1e-12)
    assert np.isnan(ewma_sigma(np.array([np.nan, np.nan]))).all()
    np.testing.assert_allclose(ewma_sigma(r[:7]), _ewma_by_loop(r[:7]), rtol=1e-12)
