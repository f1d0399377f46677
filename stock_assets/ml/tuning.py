"""Hyperparameter search with Optuna: what it may see, and the search space. No Dagster."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import optuna
import pandas as pd

from stock_assets.ml.dataset import GAP, Panel, build_panel
from stock_assets.ml.networks import ARCHITECTURES
from stock_assets.ml.training import TrainConfig, train


@dataclass(frozen=True)
class SearchSpace:
    seq_len: tuple[int, ...] = (10, 20, 40, 60)
    hidden: tuple[int, ...] = (16, 32, 64)
    layers: tuple[int, ...] = (1, 2)
    dropout: tuple[float, float] = (0.0, 0.3)
    lr: tuple[float, float] = (3e-4, 3e-3)
    batch_size: tuple[int, ...] = (32, 64, 128)
    arch: tuple[str, ...] = ARCHITECTURES

    def sample(self, trial: optuna.Trial, base: TrainConfig) -> TrainConfig:
        return replace(
            base,
            seq_len=trial.suggest_categorical("seq_len", list(self.seq_len)),
            hidden=trial.suggest_categorical("hidden", list(self.hidden)),
            layers=trial.suggest_categorical("layers", list(self.layers)),
            dropout=trial.suggest_float("dropout", *self.dropout),
            lr=trial.suggest_float("lr", *self.lr, log=True),
            batch_size=trial.suggest_categorical("batch_size", list(self.batch_size)),
            arch=trial.suggest_categorical("arch", list(self.arch)),
        )


def tuning_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The only rows tuning may read: train, validation and the gap between them.

    Calibration and test rows, and everything dated after the last validation day, are cut
    off here, before any tensor is built.
    """
    last_val = frame.loc[frame["split"] == "validation", "trade_date"].max()
    keep = frame["trade_date"] <= last_val
    return frame.loc[keep & frame["split"].isin(["train", "validation", GAP])]


@dataclass
class TuningData:
    panel: Panel  # train, gap and validation dates only, with their split labels
    target_scale: float

    def ends(self, split: str, seq_len: int) -> np.ndarray:
        return self.panel.ends(split, seq_len)


def tuning_data(frame: pd.DataFrame, features: list[str], tickers: list[str]) -> TuningData:
    rows = tuning_rows(frame)
    leaked = set(rows["split"]) - {"train", "validation", GAP}
    if leaked:
        raise AssertionError(f"tuning was handed {leaked} rows")
    train_y = rows.loc[rows["split"] == "train", "target"]
    return TuningData(build_panel(rows, features, tickers), float(train_y.std()))


def objective(
    data: TuningData, space: SearchSpace, base: TrainConfig, deadline: float | None
) -> Callable[[optuna.Trial], float]:
    def run(trial: optuna.Trial) -> float:
        config = space.sample(trial, base)

        def report(epoch: int, val_loss: float) -> None:
            trial.report(val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = train(
            data.panel,
            data.ends("train", config.seq_len),
            data.ends("validation", config.seq_len),
            config,
            data.target_scale,
            on_epoch=report,
            deadline=deadline,
        )
        trial.set_user_attr("epochs", result.epochs_run)
        return result.best_val_loss

    return run
