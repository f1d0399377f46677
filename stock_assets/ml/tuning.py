"""Hyperparameter search with Optuna: what it may see, the search space, and the study of a
dataset run (its name, budget, resumption and tracking). No Dagster."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import optuna
import pandas as pd

from stock_assets.ml.dataset import GAP, Panel, build_panel, scaled_frame
from stock_assets.ml.networks import ARCHITECTURES
from stock_assets.ml.training import TrainConfig, train
from stock_assets.settings import RetrainingSettings


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


# The study of a dataset run: the tuned_params step and every `stock-assets tune-worker` share it
# through the database, with one objective and one study-wide budget.

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def search_space(settings: RetrainingSettings) -> SearchSpace:
    return SearchSpace(
        seq_len=tuple(settings.seq_lens),
        hidden=tuple(settings.hidden_sizes),
        layers=tuple(settings.layer_counts),
        batch_size=tuple(settings.batch_sizes),
        arch=tuple(settings.architectures),
    )


def base_config(settings: RetrainingSettings) -> TrainConfig:
    return TrainConfig(
        max_epochs=settings.max_epochs, patience=settings.patience, seed=settings.seed
    )


def study_objective(
    processed: pd.DataFrame, scalers: pd.DataFrame, settings: RetrainingSettings
) -> Callable[[optuna.Trial], float]:
    """The objective of a dataset run's study: the asset and every extra worker use this one."""
    scaled, features, _ = scaled_frame(processed, scalers)
    data = tuning_data(scaled, features, sorted(scalers["ticker"]))
    return objective(data, search_space(settings), base_config(settings), deadline=None)


def open_study(storage: optuna.storages.RDBStorage, name: str, seed: int | None) -> optuna.Study:
    return optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
    )


def budget_callback(n_trials: int) -> optuna.study.MaxTrialsCallback:
    """Stop once the study — whoever ran its trials — has `n_trials` finished ones."""
    return optuna.study.MaxTrialsCallback(n_trials, states=FINISHED)


def study_name(storage: optuna.storages.RDBStorage, key: str) -> str:
    """Resume the run's unfinished study; after a finished one, start a fresh attempt."""
    prefix = f"tuned_params/{key}/"
    attempts = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.study_name.startswith(prefix):
            attempts.append((int(summary.study_name[len(prefix) :]), summary))
    if not attempts:
        return f"{prefix}1"
    number, summary = max(attempts, key=lambda a: a[0])
    if summary.user_attrs.get("complete"):
        return f"{prefix}{number + 1}"
    return summary.study_name


def open_study_name(storage: optuna.storages.RDBStorage, key: str) -> str | None:
    """The dataset run's study that is still running (not marked complete), if any."""
    name = study_name(storage, key)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, False)}
    return name if name in names else None


def tracked(
    run: Callable[[optuna.Trial], float], key: str, name: str
) -> Callable[[optuna.Trial], float]:
    """Each trial as a nested MLflow run of the active one, pruned trials included."""
    import mlflow

    def trial_run(trial: optuna.Trial) -> float:
        pruned: optuna.TrialPruned | None = None
        with mlflow.start_run(run_name=f"trial {trial.number}", nested=True) as active:
            mlflow.set_tags({"dataset_run_id": key, "optuna_study": name})
            try:
                value = run(trial)
            except optuna.TrialPruned as exc:
                mlflow.set_tags({"pruned": "true", "state": "pruned"})
                pruned = exc
            else:
                mlflow.log_metric("val_loss", value)
            mlflow.log_params(trial.params)
        if pruned is not None:
            # stopped early on purpose: its own state, not FAILED (an exception inside the
            # `with` would end it FAILED); KILLED and the `pruned` tag tell it apart
            mlflow.MlflowClient().set_terminated(active.info.run_id, status="KILLED")
            raise pruned
        return value

    return trial_run


@dataclass(frozen=True)
class StudyOutcome:
    study_name: str
    best_params: dict
    best_value: float
    completed: int
    pruned: int
    history: list[float]
    seconds: float


def run_study(
    storage: optuna.storages.RDBStorage,
    key: str,
    processed: pd.DataFrame,
    scalers: pd.DataFrame,
    settings: RetrainingSettings,
    log: Callable[[str], None] = print,
) -> StudyOutcome:
    """Run the dataset run's study to its budget (resuming an interrupted one) and mark it
    complete; trials are tracked as nested runs of the active MLflow run."""
    started = time.monotonic()
    name = study_name(storage, key)
    study = open_study(storage, name, settings.seed)
    done = sum(t.state.is_finished() for t in study.trials)
    remaining = max(settings.n_trials - done, 0)
    log(f"study {name}: {done} trials done, {remaining} to run")
    study.optimize(
        tracked(study_objective(processed, scalers, settings), key, name),
        n_trials=remaining,
        timeout=settings.timeout_seconds,
        callbacks=[budget_callback(settings.n_trials)],
    )
    study.set_user_attr("complete", True)
    states = [t.state for t in study.trials]
    completed = sum(s == optuna.trial.TrialState.COMPLETE for s in states)
    if completed == 0:
        raise RuntimeError(f"study {name} finished no trial (all pruned or failed)")
    return StudyOutcome(
        study_name=name,
        best_params=study.best_params,
        best_value=float(study.best_value),
        completed=completed,
        pruned=sum(s == optuna.trial.TrialState.PRUNED for s in states),
        history=[t.value for t in study.trials if t.value is not None],
        seconds=round(time.monotonic() - started, 1),
    )
