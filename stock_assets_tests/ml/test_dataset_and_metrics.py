"""Splits, scalers, windows, the model's shapes and the metrics. Pure and fast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from stock_assets.ml.conformal import quantile
from stock_assets.ml.dataset import SplitConfig, assign_splits, build_panel, fit_scalers
from stock_assets.ml.metrics import compare, diebold_mariano
from stock_assets.ml.networks import ARCHITECTURES, Forecaster
from stock_assets.ml.tuning import tuning_rows

DATES = pd.bdate_range("2010-01-01", periods=1000).date


def test_splits_in_time_order_with_gaps():
    config = SplitConfig(gap=30)
    labels = assign_splits(DATES, config)
    runs = (labels != labels.shift()).cumsum()
    order = [labels[runs == r].iloc[0] for r in runs.unique()]
    assert order == ["train", "gap", "validation", "gap", "calibration", "gap", "test"]
    assert all((labels[runs == r] == "gap").sum() in (0, 30) for r in runs.unique())
    counts = labels.value_counts()
    assert counts["test"] == int((1000 - 90) * 0.15) and counts["train"] > counts["test"]


def test_too_little_history_names_the_problem():
    with pytest.raises(ValueError, match="too few for the splits"):
        assign_splits(DATES[:200], SplitConfig(gap=64))


def _frame(split: pd.Series) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [(d, t) for d in split.index for t in ("A", "B")]
    return pd.DataFrame(
        {
            "trade_date": [d for d, _ in rows],
            "ticker": [t for _, t in rows],
            "split": [split[d] for d, _ in rows],
            "f1": rng.normal(size=len(rows)),
            "target": rng.normal(scale=0.01, size=len(rows)),
            "close_adj": 100.0,
        }
    )


def test_scalers_fit_on_train_rows_only():
    frame = _frame(assign_splits(DATES, SplitConfig(gap=30)))
    frame.loc[frame["split"] != "train", "f1"] = 1e6  # anything outside train is absurd
    params = fit_scalers(frame[frame["split"] == "train"], ["f1"])
    assert abs(params["A"]["f1"][0]) < 1 and params["A"]["f1"][1] < 5


def test_tuning_sees_no_calibration_or_test_rows():
    frame = _frame(assign_splits(DATES, SplitConfig(gap=30)))
    rows = tuning_rows(frame)
    assert set(rows["split"]) == {"train", "gap", "validation"}
    last_val = frame.loc[frame["split"] == "validation", "trade_date"].max()
    assert rows["trade_date"].max() == last_val


def test_panel_refuses_a_ticker_with_gaps():
    frame = _frame(assign_splits(DATES, SplitConfig(gap=30)))
    frame = frame.drop(frame.index[(frame.ticker == "B") & (frame.trade_date == DATES[500])])
    with pytest.raises(ValueError, match=r"\['B'\] have no row on"):
        build_panel(frame, ["f1"])


def test_windows_end_inside_their_split_with_full_history():
    split = assign_splits(DATES, SplitConfig(gap=30))
    panel = build_panel(_frame(split), ["f1"])
    labels = split.reindex(panel.dates).to_numpy()
    ends, _ = panel.windows(20, labels == "validation")
    assert (labels[ends] == "validation").all()
    x = panel.inputs(ends, 20)
    assert x.shape == (len(ends), 20, 2, 1)
    np.testing.assert_array_equal(x[0, -1], panel.x[ends[0]])


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_maps_sequences_to_one_return_per_ticker(arch):
    torch.manual_seed(0)
    model = Forecaster(n_features=5, n_tickers=3, hidden=8, layers=2, dropout=0.1, arch=arch)
    out = model(torch.randn(4, 10, 3, 5))
    assert out.shape == (4, 3)


def test_conformal_quantile_is_the_finite_sample_rank():
    residuals = np.arange(1, 11, dtype=float)  # n = 10: ceil(11 * 0.8) = 9th smallest
    assert quantile(residuals, 0.2) == 9.0


def test_compare_scores_naive_as_zero_skill_and_flags_naive_equivalent():
    rng = np.random.default_rng(1)
    actual = rng.normal(0, 0.01, 500)
    close = np.full(500, 100.0)
    band = np.full(500, 0.0128)
    table = compare(np.zeros(500), actual, close, {"model": (-band, band)})
    assert table["naive"]["skill"] == 0.0
    assert table["model"]["mae"] == pytest.approx(table["naive"]["mae"])
    assert table["model"]["naive_equivalent"] is True
    assert 0.7 < table["model"]["coverage"] < 0.9
    low, high = table["model"]["coverage_band_low"], table["model"]["coverage_band_high"]
    assert 0.76 < low < 0.8 < high < 0.84  # 95 % of an exact 80 % interval on 500 points
    oracle = compare(actual, actual, close)
    assert oracle["model"]["skill"] == pytest.approx(1.0)
    assert oracle["model"]["directional_accuracy"] == 1.0
    assert oracle["model"]["dm_pvalue_vs_naive"] < 1e-6


def test_diebold_mariano_is_high_for_equal_errors():
    e = np.random.default_rng(2).normal(size=300)
    assert diebold_mariano(e, e) == 1.0
    assert diebold_mariano(e, -e) == 1.0
    assert diebold_mariano(e * 0.5, e) < 1e-6
