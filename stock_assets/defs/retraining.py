"""The retraining group: one dataset run (a cutoff) → features → scalers → tuned params →
candidate → (blocking check) → production alias.

No `from __future__ import annotations` here: Dagster reads the context and resource hints.
The `mlflow` parameter is dagster-mlflow's resource, which proxies the mlflow module.
"""

import datetime as dt
import time

import numpy as np
import optuna
import pandas as pd
from dagster import (
    AllPartitionMapping,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    ConfigurableResource,
    MetadataValue,
    ResourceParam,
    asset,
    asset_check,
)
from dagster_mlflow.resources import MlFlow

from stock_assets.defs.partitions import dataset_runs_partitions
from stock_assets.defs.resources import MarketResource, PostgresResource
from stock_assets.lifecycle.dataset_runs import cutoff_of, record
from stock_assets.lifecycle.registry import log_forecaster, move_alias
from stock_assets.ml.bundle import Bundle
from stock_assets.ml.charts import history_chart_markdown
from stock_assets.ml.dataset import (
    SPLITS,
    SplitConfig,
    apply_scalers,
    assign_splits,
    build_panel,
    fit_scalers,
    select_features,
)
from stock_assets.ml.features import FEATURES, compute_features, next_log_return
from stock_assets.ml.metrics import compare, conformal_quantile
from stock_assets.ml.training import TrainConfig, predict_returns, train
from stock_assets.ml.tuning import SearchSpace, objective, tuning_data
from stock_assets.storage.prices import prices_until

GROUP = "retraining"
RUN_METADATA = {"partition_column": "dataset_run_id"}
REASON_TAG = "stock_assets/reason"


class RetrainingConfig(ConfigurableResource):
    """Budgets and rules of a retraining. Defaults are sized for 2 CPU cores."""

    model_name: str = "stock_forecaster"
    validation: float = 0.15
    calibration: float = 0.10
    test: float = 0.15
    gap: int = 64
    n_trials: int = 20
    timeout_seconds: float | None = None
    max_epochs: int = 30
    patience: int = 5
    seed: int = 0
    correlation_threshold: float | None = None
    promotion_margin: float = 0.0
    min_common_window: int = 20
    seq_lens: list[int] = [10, 20, 40, 60]
    hidden_sizes: list[int] = [16, 32, 64]
    layer_counts: list[int] = [1, 2]
    batch_sizes: list[int] = [32, 64, 128]
    architectures: list[str] = ["lstm", "lstm_attention", "lstm_cross"]

    def split_config(self) -> SplitConfig:
        if self.gap < max(self.seq_lens):
            raise ValueError(
                f"gap {self.gap} is shorter than the longest sequence length "
                f"{max(self.seq_lens)}: windows would reach across splits"
            )
        return SplitConfig(self.validation, self.calibration, self.test, self.gap)

    def space(self) -> SearchSpace:
        return SearchSpace(
            seq_len=tuple(self.seq_lens),
            hidden=tuple(self.hidden_sizes),
            layers=tuple(self.layer_counts),
            batch_size=tuple(self.batch_sizes),
            arch=tuple(self.architectures),
        )

    def base_config(self) -> TrainConfig:
        return TrainConfig(max_epochs=self.max_epochs, patience=self.patience, seed=self.seed)


def _md_table(table: dict[str, dict], columns: list[str]) -> str:
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in table.items():
        cells = []
        for c in columns:
            v = row.get(c, "")
            cells.append(f"{v:.4f}" if isinstance(v, float) else str(v))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


METRIC_COLUMNS = ["mae", "rmse", "mape", "directional_accuracy", "skill"]


def _scaled(processed: pd.DataFrame, scalers: pd.DataFrame):
    features = list(scalers["features"].iloc[0])
    params = {row.ticker: row.params for row in scalers.itertuples()}
    return apply_scalers(processed, params, features), features, params


def build_retraining(raw_prices: AssetsDefinition) -> tuple[list[AssetsDefinition], list]:
    @asset(
        group_name=GROUP,
        partitions_def=dataset_runs_partitions,
        deps=[AssetDep(raw_prices, partition_mapping=AllPartitionMapping())],
        io_manager_key="postgres_io",
        metadata=RUN_METADATA,
        kinds={"pandas", "postgres"},
        description="Causal TA-Lib features of every raw_prices row up to the run's cutoff, "
        "with the next-session log return as target and the split of each session.",
    )
    def processed_features(
        context: AssetExecutionContext,
        market: MarketResource,
        stocks_db: PostgresResource,
        retraining: RetrainingConfig,
    ) -> pd.DataFrame:
        key = context.partition_key
        cutoff = cutoff_of(key)
        split_config = retraining.split_config()
        tickers = market.ticker_list()
        with stocks_db.connect() as conn:
            record(conn, key, context.run.tags.get(REASON_TAG, "materialized"), context.run_id)
            prices = prices_until(conn, tickers, cutoff)
        missing = sorted(set(tickers) - set(prices["ticker"]))
        if missing:
            raise ValueError(f"raw_prices has no rows up to {cutoff} for {missing}")
        last = prices.groupby("ticker")["trade_date"].max()
        stale = last[last != cutoff]
        if len(stale):
            raise ValueError(
                f"cutoff {cutoff} is not a stored session for {list(stale.index)} "
                f"(their last stored day: {stale.min()}); ingest raw_prices through the cutoff"
            )
        prices = prices.reset_index(drop=True)
        feats = compute_features(prices)
        idx = pd.MultiIndex.from_frame(feats[["trade_date", "ticker"]])
        by_key = prices.set_index(["trade_date", "ticker"])
        target = pd.Series(next_log_return(prices).to_numpy(), index=by_key.index)
        splits = assign_splits(feats["trade_date"].unique(), split_config)
        frame = pd.DataFrame(
            {
                "dataset_run_id": key,
                "trade_date": feats["trade_date"].to_numpy(),
                "ticker": feats["ticker"].to_numpy(),
                "split": splits.reindex(feats["trade_date"]).to_numpy(),
                "close_adj": by_key["adj_close"].reindex(idx).to_numpy(),
                "target": target.reindex(idx).to_numpy(),
            }
        )
        for f in FEATURES:
            frame[f] = feats[f].to_numpy()
        bounds = frame.groupby("split")["trade_date"].agg(["min", "max", "nunique"])
        context.add_output_metadata(
            {
                "cutoff": str(cutoff),
                "rows": len(frame),
                "features": len(FEATURES),
                "splits": MetadataValue.md(
                    "| split | first | last | sessions |\n|---|---|---|---|\n"
                    + "\n".join(
                        f"| {s} | {bounds.loc[s, 'min']} | {bounds.loc[s, 'max']} | "
                        f"{bounds.loc[s, 'nunique']} |"
                        for s in SPLITS
                    )
                ),
            }
        )
        return frame

    @asset(
        group_name=GROUP,
        partitions_def=dataset_runs_partitions,
        io_manager_key="postgres_io",
        metadata=RUN_METADATA,
        kinds={"pandas", "postgres"},
        description="Per-ticker, per-feature mean and std fit on the train split only (JSON), "
        "and the features kept by the optional correlation filter.",
    )
    def scalers(
        context: AssetExecutionContext,
        processed_features: pd.DataFrame,
        retraining: RetrainingConfig,
    ) -> pd.DataFrame:
        train_rows = processed_features[processed_features["split"] == "train"]
        kept = select_features(train_rows, FEATURES, retraining.correlation_threshold)
        params = fit_scalers(train_rows, kept)
        context.add_output_metadata(
            {
                "features_kept": len(kept),
                "features_dropped": MetadataValue.json(sorted(set(FEATURES) - set(kept))),
                "fit_window": f"{train_rows['trade_date'].min()} … "
                f"{train_rows['trade_date'].max()}",
            }
        )
        return pd.DataFrame(
            {
                "dataset_run_id": context.partition_key,
                "ticker": list(params),
                "features": [kept] * len(params),
                "params": [params[t] for t in params],
            }
        )

    @asset(
        group_name=GROUP,
        partitions_def=dataset_runs_partitions,
        io_manager_key="postgres_io",
        metadata=RUN_METADATA,
        kinds={"optuna", "pytorch", "postgres"},
        description="Optuna search (seeded TPE, median pruner) over sequence length, size, "
        "dropout, learning rate, batch size and architecture, on validation loss. The study "
        "lives in the stocks database: workers can join it and an interrupted run resumes.",
    )
    def tuned_params(
        context: AssetExecutionContext,
        processed_features: pd.DataFrame,
        scalers: pd.DataFrame,
        retraining: RetrainingConfig,
        stocks_db: PostgresResource,
        mlflow: ResourceParam[MlFlow],
    ) -> pd.DataFrame:
        key = context.partition_key
        storage = optuna.storages.RDBStorage(url=stocks_db.url_for_driver("psycopg2"))
        study_name = _study_name(storage, key)
        study = open_study(storage, study_name, retraining.seed)
        done = [t for t in study.trials if t.state.is_finished()]
        remaining = max(retraining.n_trials - len(done), 0)
        run_objective = tuning_objective(processed_features, scalers, retraining)

        def tracked(trial: optuna.Trial) -> float:
            with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
                mlflow.set_tags({"dataset_run_id": key, "optuna_study": study_name})
                try:
                    value = run_objective(trial)
                except optuna.TrialPruned:
                    mlflow.log_params(trial.params)
                    mlflow.set_tag("state", "pruned")
                    raise
                mlflow.log_params(trial.params)
                mlflow.log_metric("val_loss", value)
                return value

        started = time.monotonic()
        context.log.info(f"study {study_name}: {len(done)} trials done, {remaining} to run")
        # workers (`stock-assets tune-worker`) may add trials meanwhile: the budget is the study's
        study.optimize(
            tracked,
            n_trials=remaining,
            timeout=retraining.timeout_seconds,
            callbacks=[budget_callback(retraining.n_trials)],
        )
        study.set_user_attr("complete", True)
        states = [t.state for t in study.trials]
        completed = sum(s == optuna.trial.TrialState.COMPLETE for s in states)
        pruned = sum(s == optuna.trial.TrialState.PRUNED for s in states)
        if completed == 0:
            raise RuntimeError(f"study {study_name} finished no trial (all pruned or failed)")
        history = [t.value for t in study.trials if t.value is not None]
        context.add_output_metadata(
            {
                "study": study_name,
                "best_value": float(study.best_value),
                "trials_completed": completed,
                "trials_pruned": pruned,
                "seconds": round(time.monotonic() - started, 1),
                "optimization_history": MetadataValue.md(
                    history_chart_markdown(history, "validation loss per trial")
                ),
            }
        )
        mlflow.log_params({f"best_{k}": v for k, v in study.best_params.items()})
        return pd.DataFrame(
            {
                "dataset_run_id": [key],
                "study_name": [study_name],
                "params": [study.best_params],
                "best_value": [float(study.best_value)],
                "trials_completed": [completed],
                "trials_pruned": [pruned],
            }
        )

    @asset(
        group_name=GROUP,
        partitions_def=dataset_runs_partitions,
        io_manager_key="postgres_io",
        metadata=RUN_METADATA,
        kinds={"pytorch", "mlflow", "postgres"},
        description="The tuned architecture trained with early stopping, 80 % split-conformal "
        "intervals from calibration, scored on test next to naive and always-up, logged and "
        "registered in MLflow.",
    )
    def candidate_model(
        context: AssetExecutionContext,
        processed_features: pd.DataFrame,
        scalers: pd.DataFrame,
        tuned_params: pd.DataFrame,
        retraining: RetrainingConfig,
        stocks_db: PostgresResource,
        mlflow: ResourceParam[MlFlow],
    ) -> pd.DataFrame:
        key = context.partition_key
        cutoff = cutoff_of(key)
        scaled, features, params = _scaled(processed_features, scalers)
        tickers = sorted(params)
        best = dict(tuned_params["params"].iloc[0])
        config = TrainConfig(
            **best,
            max_epochs=retraining.max_epochs,
            patience=retraining.patience,
            seed=retraining.seed,
        )
        panel = build_panel(scaled, features, tickers)

        def ends(name: str) -> np.ndarray:
            return panel.ends(name, config.seq_len)

        train_rows = scaled[scaled["split"] == "train"]
        target_scale = float(train_rows["target"].std())
        result = train(panel, ends("train"), ends("validation"), config, target_scale)
        cal = ends("calibration")
        cal_pred = predict_returns(result.model, panel, cal, config.seq_len, target_scale)
        half_width = conformal_quantile(panel.y[cal] - cal_pred)
        test = ends("test")
        test_pred = predict_returns(result.model, panel, test, config.seq_len, target_scale)
        table = compare(
            test_pred,
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
        with stocks_db.connect() as conn:
            prices = prices_until(conn, tickers, cutoff)
        example = prices.groupby("ticker").tail(bundle.history_needed() + 1)
        mlflow.log_params(
            {
                "dataset_run_id": key,
                "cutoff": str(cutoff),
                "dagster_run_id": context.run_id,
                **{f"model_{k}": v for k, v in config.model_params().items()},
                "half_width": half_width,
                "tickers": ",".join(tickers),
            }
        )
        mlflow.log_metrics(
            {
                f"test_{who}_{m}": float(v)
                for who, row in table.items()
                for m, v in row.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
        )
        mlflow.log_metric("best_val_loss", result.best_val_loss)
        version = log_forecaster(
            bundle,
            result.model,
            retraining.model_name,
            example,
            {
                "dataset_run_id": key,
                "kind": config.arch,
                "cutoff": str(cutoff),
                "dagster_run_id": context.run_id,
            },
        )
        test_dates = panel.dates[test]
        context.add_output_metadata(
            {
                "model_version": version,
                "architecture": config.arch,
                "test_window": f"{test_dates.min()} … {test_dates.max()}",
                "naive_equivalent": bool(table["model"]["naive_equivalent"]),
                "test_metrics": MetadataValue.md(_md_table(table, METRIC_COLUMNS)),
                "coverage_80": float(table["model"]["coverage"]),
                "windows_per_second": round(result.windows_per_second, 1),
            }
        )
        return pd.DataFrame(
            {
                "dataset_run_id": [key],
                "model_name": [retraining.model_name],
                "model_version": [version],
                "mlflow_run_id": [mlflow.active_run().info.run_id],
                "kind": [config.arch],
                "cutoff": [cutoff],
                "test_start": [test_dates.min()],
                "test_end": [test_dates.max()],
                "metrics": [table],
            }
        )

    @asset_check(
        asset=candidate_model,
        name="beats_production",
        blocking=True,
        description="Candidate and production scored on the part of the candidate's test "
        "window production never trained on; passes when the candidate's MAE beats "
        "production's by the configured margin.",
    )
    def beats_production(
        context: AssetCheckExecutionContext,
        candidate_model: pd.DataFrame,
        retraining: RetrainingConfig,
        stocks_db: PostgresResource,
        mlflow: ResourceParam[MlFlow],
    ) -> AssetCheckResult:
        from stock_assets.lifecycle.promotion import judge

        key = context.run.tags.get("dagster/partition")
        rows = candidate_model[candidate_model["dataset_run_id"] == key]
        if rows.empty:
            return AssetCheckResult(
                passed=False, metadata={"reason": f"no candidate row for dataset run {key!r}"}
            )
        verdict = judge(rows.iloc[0], retraining, stocks_db)
        return AssetCheckResult(
            passed=verdict.passed,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "reason": verdict.reason,
                "window": verdict.window,
                "sessions": verdict.sessions,
                "production_version": verdict.production_version,
                "candidate_version": verdict.candidate_version,
                "metrics": MetadataValue.md(_md_table(verdict.table, METRIC_COLUMNS))
                if verdict.table
                else "",
            },
        )

    @asset(
        group_name=GROUP,
        partitions_def=dataset_runs_partitions,
        io_manager_key="postgres_io",
        metadata=RUN_METADATA,
        kinds={"mlflow"},
        description="Moves the MLflow alias `production` to the candidate that passed "
        "beats_production, and logs the move in model_promotions.",
    )
    def production_model(
        context: AssetExecutionContext,
        candidate_model: pd.DataFrame,
        retraining: RetrainingConfig,
        stocks_db: PostgresResource,
    ) -> pd.DataFrame:
        key = context.partition_key
        row = candidate_model[candidate_model["dataset_run_id"] == key].iloc[0]
        with stocks_db.connect() as conn:
            previous = move_alias(
                conn,
                retraining.model_name,
                str(row.model_version),
                "beats production",
                dataset_run_id=key,
                metrics=row.metrics,
            )
        context.add_output_metadata(
            {"production_version": str(row.model_version), "previous_version": str(previous)}
        )
        return pd.DataFrame(
            {
                "dataset_run_id": [key],
                "model_name": [retraining.model_name],
                "model_version": [str(row.model_version)],
                "previous_version": [previous],
                "promoted_at": [pd.Timestamp(dt.datetime.now(dt.UTC))],
            }
        )

    assets = [processed_features, scalers, tuned_params, candidate_model, production_model]
    return assets, [beats_production]


def tuning_objective(processed: pd.DataFrame, scalers: pd.DataFrame, retraining):
    """The objective of a dataset run's study: the asset and every extra worker use this one."""
    scaled, features, _ = _scaled(processed, scalers)
    data = tuning_data(scaled, features, sorted(scalers["ticker"]))
    return objective(data, retraining.space(), retraining.base_config(), deadline=None)


def open_study(storage: optuna.storages.RDBStorage, name: str, seed: int | None):
    return optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
    )


def budget_callback(n_trials: int):
    """Stop once the study — whoever ran its trials — has `n_trials` finished ones."""
    return optuna.study.MaxTrialsCallback(
        n_trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    )


def open_study_name(storage: optuna.storages.RDBStorage, key: str) -> str | None:
    """The dataset run's study that is still running (not marked complete), if any."""
    name = _study_name(storage, key)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, False)}
    return name if name in names else None


def _study_name(storage: optuna.storages.RDBStorage, key: str) -> str:
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
