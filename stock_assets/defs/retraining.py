"""The retraining group: one dataset run (a cutoff) → features → scalers → tuned params →
candidate → (blocking check) → production alias. Each body reads, calls the library, writes.

No `from __future__ import annotations` here: Dagster reads the context and resource hints.
The `mlflow` parameter is dagster-mlflow's resource, which proxies the mlflow module.
"""

import datetime as dt

import optuna
import pandas as pd
from dagster import (
    AllPartitionMapping,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    AssetObservation,
    DagsterEventType,
    MetadataValue,
    Output,
    ResourceParam,
    asset,
    asset_check,
)
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster_mlflow.resources import MlFlow

from stock_assets.defs.metadata import metrics_md
from stock_assets.defs.partitions import dataset_runs_partitions
from stock_assets.defs.resources import MarketResource, PostgresResource, RetrainingConfig
from stock_assets.defs.tags import REASON_TAG
from stock_assets.lifecycle.dataset_runs import cutoff_of, record
from stock_assets.lifecycle.journal import move
from stock_assets.lifecycle.promotion import judge
from stock_assets.lifecycle.registry import log_candidate
from stock_assets.lifecycle.retraining_lease import acquire, finished_in
from stock_assets.ml.candidate import fit_candidate
from stock_assets.ml.charts import history_chart_markdown
from stock_assets.ml.dataset import SplitConfig, fit_scalers, select_features, split_bounds
from stock_assets.ml.features import FEATURES
from stock_assets.ml.processed import check_history, processed_frame
from stock_assets.ml.tuning import run_study
from stock_assets.runtime import failpoints
from stock_assets.storage import schema
from stock_assets.storage.prices import prices_until

GROUP = "retraining"
CHECK_NAME = "beats_production"


def _one_run(table: schema.AssetTable, kinds: set[str], description: str) -> dict:
    """What every asset of the group shares: one table slice per dataset run."""
    return dict(
        group_name=GROUP,
        partitions_def=dataset_runs_partitions,
        io_manager_key="postgres_io",
        metadata=table.metadata(),
        kinds=kinds,
        description=description,
    )


@asset(
    deps=[
        AssetDep(table, partition_mapping=AllPartitionMapping())
        for table in (schema.RAW_PRICES.name, schema.CORPORATE_ACTIONS.name)
    ],
    **_one_run(
        schema.PROCESSED_FEATURES,
        {"pandas", "postgres"},
        "Causal TA-Lib features of every raw_prices row up to the run's cutoff, "
        "with the next-session log return as target and the split of each session.",
    ),
)
def processed_features(
    context: AssetExecutionContext,
    market: MarketResource,
    stocks_db: PostgresResource,
    retraining: RetrainingConfig,
) -> pd.DataFrame:
    key, settings = context.partition_key, retraining.settings()
    cutoff, tickers = cutoff_of(key), market.ticker_list()
    with stocks_db.connect() as conn:
        stale = acquire(
            conn, retraining.model_name, context.run_id, key, finished_in(context.instance)
        )
        if stale is not None:
            context.log.warning(f"took over the stale lease of {stale.describe()}")
        record(conn, key, context.run.tags.get(REASON_TAG, "materialized"), context.run_id)
        prices = prices_until(conn, tickers, cutoff)
    check_history(prices, tickers, cutoff)
    frame = processed_frame(prices, key, SplitConfig.of(settings))
    bounds = split_bounds(frame)
    table = "| split | first | last | sessions |\n|---|---|---|---|\n" + "\n".join(
        f"| {s} | {b['min']} | {b['max']} | {b['nunique']} |" for s, b in bounds.iterrows()
    )
    context.add_output_metadata(
        {
            "cutoff": str(cutoff),
            "rows": len(frame),
            "features": len(FEATURES),
            "splits": MetadataValue.md(table),
        }
    )
    return frame


@asset(
    **_one_run(
        schema.SCALERS,
        {"pandas", "postgres"},
        "Per-ticker, per-feature mean and std fit on the train split only (JSON), "
        "and the features kept by the optional correlation filter.",
    )
)
def scalers(
    context: AssetExecutionContext, processed_features: pd.DataFrame, retraining: RetrainingConfig
) -> pd.DataFrame:
    train_rows = processed_features[processed_features["split"] == "train"]
    kept = select_features(train_rows, FEATURES, retraining.correlation_threshold)
    params = fit_scalers(train_rows, kept)
    context.add_output_metadata(
        {
            "features_kept": len(kept),
            "features_dropped": MetadataValue.json(sorted(set(FEATURES) - set(kept))),
            "fit_window": f"{train_rows['trade_date'].min()} … {train_rows['trade_date'].max()}",
        }
    )
    return pd.DataFrame(
        {
            "dataset_run_id": context.partition_key,
            "ticker": list(params),
            "features": [kept] * len(params),
            "params": list(params.values()),
        }
    )


@asset(
    **_one_run(
        schema.TUNED_PARAMS,
        {"optuna", "pytorch", "postgres"},
        "Optuna search (seeded TPE, median pruner) over sequence length, size, dropout, learning "
        "rate, batch size and architecture, on validation loss. The study lives in the stocks "
        "database: workers can join it and an interrupted run resumes.",
    )
)
def tuned_params(
    context: AssetExecutionContext,
    processed_features: pd.DataFrame,
    scalers: pd.DataFrame,
    retraining: RetrainingConfig,
    stocks_db: PostgresResource,
    mlflow: ResourceParam[MlFlow],
) -> pd.DataFrame:
    storage = optuna.storages.RDBStorage(url=stocks_db.url_for_driver("psycopg2"))
    study = run_study(
        storage,
        context.partition_key,
        processed_features,
        scalers,
        retraining.settings(),
        log=context.log.info,
    )
    context.add_output_metadata(
        {
            "study": study.study_name,
            "best_value": study.best_value,
            "trials_completed": study.completed,
            "trials_pruned": study.pruned,
            "seconds": study.seconds,
            "optimization_history": MetadataValue.md(
                history_chart_markdown(study.history, "validation loss per trial")
            ),
        }
    )
    mlflow.log_params({f"best_{k}": v for k, v in study.best_params.items()})
    return pd.DataFrame(
        {
            "dataset_run_id": [context.partition_key],
            "study_name": [study.study_name],
            "params": [study.best_params],
            "best_value": [study.best_value],
            "trials_completed": [study.completed],
            "trials_pruned": [study.pruned],
        }
    )


@asset(
    **_one_run(
        schema.CANDIDATE_MODEL,
        {"pytorch", "mlflow", "postgres"},
        "The tuned architecture trained with early stopping, 80 % split-conformal intervals "
        "from calibration, scored on test next to naive and always-up, logged and registered "
        "in MLflow.",
    )
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
    key, cutoff = context.partition_key, cutoff_of(context.partition_key)
    best = dict(tuned_params["params"].iloc[0])
    fitted = fit_candidate(processed_features, scalers, best, retraining.settings(), key, cutoff)
    with stocks_db.connect() as conn:
        prices = prices_until(conn, fitted.bundle.tickers, cutoff)
        version = log_candidate(conn, fitted, prices, retraining.model_name, context.run_id)
    first, last = fitted.test_window
    context.add_output_metadata(
        {
            "model_version": version,
            "architecture": fitted.config.arch,
            "test_window": f"{first} … {last}",
            "naive_equivalent": bool(fitted.table["model"]["naive_equivalent"]),
            "test_metrics": metrics_md(fitted.table),
            "coverage_80": float(fitted.table["model"]["coverage"]),
            "interval_score_pct": float(fitted.table["model"]["interval_score_pct"]),
            "windows_per_second": round(fitted.result.windows_per_second, 1),
        }
    )
    row = {
        "dataset_run_id": key,
        "model_name": retraining.model_name,
        "model_version": version,
        "mlflow_run_id": mlflow.active_run().info.run_id,
        "kind": fitted.config.arch,
        "cutoff": cutoff,
        "test_start": first,
        "test_end": last,
        "metrics": fitted.table,
    }
    return pd.DataFrame({k: [v] for k, v in row.items()})


@asset_check(
    asset=candidate_model,
    name=CHECK_NAME,
    blocking=True,
    description="Candidate and production scored on the part of the candidate's test "
    "window production never trained on; passes when the candidate's MAE beats "
    "production's by the configured margin, its 80 % interval score is no worse, and (when "
    "STOCK_ASSETS_PROMOTION_DM_PVALUE is set) its one-sided Diebold–Mariano p-value is below it.",
)
def beats_production(
    context: AssetCheckExecutionContext,
    candidate_model: pd.DataFrame,
    retraining: RetrainingConfig,
    stocks_db: PostgresResource,
    mlflow: ResourceParam[MlFlow],
) -> AssetCheckResult:
    key = context.run.tags.get(PARTITION_NAME_TAG)
    rows = candidate_model[candidate_model["dataset_run_id"] == key]
    if rows.empty:  # a real fault: ERROR, the run fails and production_model does not run
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            metadata={"reason": f"no candidate row for dataset run {key!r}"},
        )
    with stocks_db.connect() as conn:
        verdict = judge(
            conn,
            rows.iloc[0],
            retraining.model_name,
            retraining.promotion_margin,
            retraining.min_common_window,
            retraining.promotion_dm_pvalue,
        )
    mlflow.set_tag(CHECK_NAME, "passed" if verdict.passed else "rejected")
    # A rejection is the check doing its job, not a fault: WARN keeps the run green and the
    # lineage graph free of red. production_model still waits for this check (blocking) and
    # moves the alias only on a passed evaluation of this run (_judged_against).
    return AssetCheckResult(
        passed=verdict.passed,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "reason": verdict.reason,
            "decision": MetadataValue.md("\n".join(f"- {t}" for t in verdict.terms)),
            "window": verdict.window,
            "sessions": verdict.sessions,
            "production_version": verdict.production_version,
            "candidate_version": verdict.candidate_version,
            "metrics": metrics_md(verdict.table) if verdict.table else "",
        },
    )


@asset(
    **_one_run(
        schema.PRODUCTION_MODEL,
        {"mlflow"},
        "Moves the MLflow alias `production` to the candidate that passed beats_production, "
        "and logs the move in model_promotions. A rejected candidate leaves it unmaterialized "
        "for the dataset run, with an observation saying why.",
    ),
    output_required=False,
)
def production_model(
    context: AssetExecutionContext,
    candidate_model: pd.DataFrame,
    retraining: RetrainingConfig,
    stocks_db: PostgresResource,
):
    key, name = context.partition_key, retraining.model_name
    row = candidate_model[candidate_model["dataset_run_id"] == key].iloc[0]
    version = str(row.model_version)
    judged, verdict = _judged_against(context, version)
    if judged is None:
        context.log.info(f"candidate v{version} rejected: {verdict.get('reason', '')}")
        yield AssetObservation(
            asset_key=context.asset_key,
            partition=key,
            metadata={
                "decision": "candidate rejected",
                "candidate_version": version,
                "production_version": str(verdict.get("production_version", "")),
                "reason": str(verdict.get("reason", "")),
            },
        )
        return
    failpoints.hit("production_model.before_move")
    with stocks_db.connect() as conn:
        moved = move(
            conn,
            name,
            version,
            expected=judged,
            actor="check",
            reason="beats production",
            dataset_run_id=key,
            metrics=row.metrics,
            log=context.log.warning,
        )
    previous = moved.previous
    frame = pd.DataFrame(
        {
            "dataset_run_id": [key],
            "model_name": [name],
            "model_version": [version],
            "previous_version": [previous],
            "promoted_at": [pd.Timestamp(dt.datetime.now(dt.UTC))],
        }
    )
    yield Output(
        frame,
        metadata={
            "decision": "promoted",
            "production_version": version,
            "previous_version": str(previous),
        },
    )


def _judged_against(context: AssetExecutionContext, candidate: str) -> tuple[str | None, dict]:
    """The production version this run's beats_production passed the candidate against (the
    promotion moves the alias only if production still holds it: compare-and-set), or None
    with the failed verdict's metadata. No evaluation at all is a fault, never a rejection."""
    rejected = None
    for entry in context.instance.all_logs(
        context.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ):
        evaluation = entry.dagster_event.event_specific_data
        if evaluation.check_name != CHECK_NAME:
            continue
        meta = {k: v.value for k, v in evaluation.metadata.items()}
        if str(meta.get("candidate_version")) != candidate:
            continue
        if evaluation.passed:
            return str(meta["production_version"]), meta
        rejected = meta
    if rejected is not None:
        return None, rejected
    raise RuntimeError(
        f"no {CHECK_NAME} evaluation for candidate version {candidate} in this run: "
        "production_model moves the alias only in the run that judged the candidate"
    )


RETRAINING_ASSETS = [processed_features, scalers, tuned_params, candidate_model, production_model]
