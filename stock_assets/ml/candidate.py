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
from stock_assets.ml.dataset import build_panel, scaled_frame
from stock_assets.ml.metrics import compare, conformal_quantile
from stock_assets.ml.training import TrainConfig, TrainResult, predict_returns, train
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

    half_width = conformal_quantile(panel.y[ends["calibration"]] - predict("calibration"))
    test = ends["test"]
    table = compare(
        predict("test"),
        panel.y[test],
        panel.close[test],
        half_width,
        drift=float(train_rows["target"].mean()),
    )
    bundle = Bundle(
        kind=config.arch,
        tickers=tickers,
        half_width=half_width,
        seq_len=config.seq_len,
        features=features,
        scalers=params,
        target_scale=target_scale,
        model_params=config.model_params(),
        cutoff=str(cutoff),
        dataset_run_id=key,
    )
    return Candidate(bundle, result.model, config, table, panel.dates[test], result)
