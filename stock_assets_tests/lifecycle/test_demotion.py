"""The demotion rule on constructed error sequences: it fires when production is worse than
naive beyond noise, and not when the two are equal within noise."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from stock_assets.lifecycle.demotion import verdict
from stock_assets.settings import PolicySettings

T = PolicySettings(demotion_sessions=40, demotion_significance=0.05)


def _rows(ratio: float, noise: float, sessions: int = 40, seed: int = 3) -> pd.DataFrame:
    """Two tickers; naive's absolute error ~1 % of the price, the model's `ratio` × it with
    multiplicative noise."""
    rng = np.random.default_rng(seed)
    days = [dt.date(2019, 1, 2) + dt.timedelta(days=i) for i in range(sessions)]
    rows = []
    for day in days:
        for ticker in ("AAA", "BBB"):
            naive = abs(rng.normal(1.0, 0.6))
            model = naive * ratio * (1 + rng.normal(0, noise))
            rows.append(
                {
                    "trade_date": day,
                    "ticker": ticker,
                    "in_sample": False,
                    "actual_close": 100.0,
                    "abs_error": abs(model),
                    "naive_abs_error": naive,
                }
            )
    return pd.DataFrame(rows)


def test_a_model_worse_than_naive_is_demoted():
    said = verdict(_rows(ratio=1.15, noise=0.1), "3", "lstm", T)
    assert said.demote and said.p_value < 0.05 and said.skill < -0.1
    assert said.sessions == 40 and "worse than naive" in said.reason and "v3 (lstm)" in said.reason


def test_a_model_equal_to_naive_within_noise_is_kept():
    for seed in range(5):
        said = verdict(_rows(ratio=1.0, noise=0.1, seed=seed), "3", "lstm", T)
        assert not said.demote, said.reason
        assert "not significantly worse" in said.reason


def test_only_enough_out_of_sample_sessions_of_a_learned_model_count():
    worse = _rows(ratio=1.5, noise=0.1)
    assert not verdict(worse, "1", "naive", T).demote  # naive is never demoted
    short = verdict(worse[worse["trade_date"] < dt.date(2019, 2, 1)], "3", "lstm", T)
    assert not short.demote and "30 of 40 scored sessions" in short.reason
    in_sample = worse.assign(in_sample=True)
    assert "0 of 40" in verdict(in_sample, "3", "lstm", T).reason
    off = PolicySettings(demotion_sessions=40, demotion_significance=0.0)
    assert not verdict(worse, "3", "lstm", off).demote
