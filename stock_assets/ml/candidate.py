"""Fitting one dataset run's candidate: train the tuned architecture with early stopping,
calibrate its 80 % interval on the calibration split, score it on test beside naive and
always-up, and package it as a Bundle. Pure of Dagster and MLflow (logging is the registry's)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stock_assets.ml.bundle import Bundle
from stock_assets.ml.conformal import TARGET_MISCOVERAGE, compact, gaussian_z, quantile, scores
from stock_assets.ml.dataset import build_panel, scaled_frame
from stock_assets.ml.metrics import compare
from stock_assets.ml.training import TrainConfig, TrainResult, predict_returns, train
from stock_assets.ml.volatility import EWMA_LAMBDA, panel_garch, panel_sigma
from stock_assets.settings import RetrainingSettings


@dataclass
class Candidate:
    bundle: Bundle
    net: Any
    config: TrainConfig
    table: dict[str, dict]  # test metrics: model, naive, always_up
    test_dates: np.ndarray
    result: TrainResult

    @property
    def test_window(self) -> tuple[dt.date, dt.date]:
        return self.test_dates.min(), self.test_dates.max()


def fit_candidate(
    processed: pd.DataFrame,
    scalers: pd.DataFrame,
    best_params: dict,
    settings: RetrainingSettings,
    key: str,
    cutoff: dt.date,
) -> Candidate:
    scaled, features, params = scaled_frame(processed, scalers)
    tickers = sorted(params)
    config = TrainConfig(
        **best_params,
        max_epochs=settings.max_epochs,
        patience=settings.patience,
        seed=settings.seed,
    )
    panel = build_panel(scaled, features, tickers)
    train_rows = scaled[scaled["split"] == "train"]
    target_scale = float(train_rows["target"].std())
    ends = {
        name: panel.ends(name, config.seq_len)
        for name in ("train", "validation", "calibration", "test")
    }
    result = train(panel, ends["train"], ends["validation"], config, target_scale)

    def predict(name: str) -> np.ndarray:
        return predict_returns(result.model, panel, ends[name], config.seq_len, target_scale)

    sigma = panel_sigma(panel.close, EWMA_LAMBDA)
    cal, test = ends["calibration"], ends["test"]
    cal_scores = scores(panel.y[cal] - predict("calibration"), sigma[cal])
    q = float(quantile(cal_scores, TARGET_MISCOVERAGE))
    drift = float(train_rows["target"].mean())
    pred = predict("test")
    table = compare(
        pred,
        panel.y[test],
        panel.close[test],
        split_intervals(panel, cal, test, sigma, pred, q, drift),
        drift=drift,
    )
    bundle = Bundle(
        kind=config.arch,
        tickers=tickers,
        half_width=float(q * np.nanmedian(sigma[cal])),
        scores=compact(cal_scores),
        ewma_lambda=EWMA_LAMBDA,
        seq_len=config.seq_len,
        features=features,
        scalers=params,
        target_scale=target_scale,
        model_params=config.model_params(),
        cutoff=str(cutoff),
        dataset_run_id=key,
    )
    return Candidate(bundle, result.model, config, table, panel.dates[test], result)


def split_intervals(
    panel, cal: np.ndarray, test: np.ndarray, sigma: np.ndarray, pred, q: float, drift: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """80 % intervals on the test split (log return) for the table's rows: the model's
    (EWMA-scaled, q from calibration), naive's and always-up's (the same machinery around 0 and
    the drift), and the GARCH(1,1) naive baseline (Gaussian, fitted on train)."""
    s = sigma[test]
    q_naive = float(quantile(scores(panel.y[cal], sigma[cal]), TARGET_MISCOVERAGE))
    train_end = int(np.flatnonzero(panel.split == "train").max()) + 1
    garch = panel_garch(panel.close, train_end)[test] * gaussian_z()
    return {
        "model": (pred - q * s, pred + q * s),
        "naive": (-q_naive * s, q_naive * s),
        "always_up": (drift - q_naive * s, drift + q_naive * s),
        "garch_naive": (-garch, garch),
    }
