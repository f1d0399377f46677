"""The operations group: daily predictions with the production model, their scoring once the
target session has closed, and the old system's JSON files.

No `from __future__ import annotations` here: Dagster reads the context and resource hints.
"""

import datetime as dt
from pathlib import Path

import pandas as pd
from dagster import (
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from stock_assets.defs.partitions import trading_days
from stock_assets.defs.resources import (
    MarketResource,
    ModelRegistryResource,
    OperationsConfig,
    PostgresResource,
)
from stock_assets.lifecycle.journal import ensure_production
from stock_assets.lifecycle.registry import load_version, naive_bundle
from stock_assets.lifecycle.scoring import (
    in_traded_basis,
    prediction_notes,
    prediction_rows,
    score,
    summaries_by_session,
)
from stock_assets.market.calendars import next_sessions, sessions_among, sessions_between
from stock_assets.ml.charts import prediction_chart_markdown
from stock_assets.ml.serving import serve
from stock_assets.runtime import failpoints
from stock_assets.storage import queries
from stock_assets.storage.exports import export_predictions
from stock_assets.storage.prices import prices_until, stored_bars
from stock_assets.storage.schema import (
    CORPORATE_ACTIONS,
    DAILY_PREDICTIONS,
    PERFORMANCE_COLUMNS,
    PERFORMANCE_LOG,
    PREDICTION_COLUMNS,
    RAW_PRICES,
)

GROUP = "operations"
CHART_MAX_PARTITIONS = 5


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in columns})


@asset(
    group_name=GROUP,
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[RAW_PRICES.name, CORPORATE_ACTIONS.name],
    io_manager_key="postgres_io",
    metadata=DAILY_PREDICTIONS.metadata(),
    kinds={"mlflow", "postgres"},
    description="After the close of D, the production model's prediction of the next "
    "session's close with its 80 % interval, per ticker. Features start at each ticker's "
    "first stored row, exactly as in training.",
)
def daily_predictions(
    context: AssetExecutionContext,
    market: MarketResource,
    stocks_db: PostgresResource,
    registry: ModelRegistryResource,
) -> pd.DataFrame:
    sessions = sessions_among(context.partition_keys, market.exchange)
    if not sessions:
        context.log.info("no session in these partitions: nothing to predict")
        return _empty(PREDICTION_COLUMNS)
    registry.setup()
    tickers = market.ticker_list()
    with stocks_db.connect() as conn:
        prices = prices_until(conn, tickers, max(sessions))
        if prices.empty:
            raise ValueError("raw_prices holds no rows for the configured tickers")
        # resolved once: every row is stamped with the version that made it, even when a
        # promotion lands while this run works
        production = ensure_production(conn, registry.model_name, prices, context.log.warning)
        failpoints.hit("serving.after_resolve")
        model, bundle = load_version(conn, registry.model_name, production.version)
        traded = stored_bars(conn, tickers, min(sessions), max(sessions))
    calendar = sessions_between(prices["trade_date"].min(), max(sessions), market.exchange)
    served = serve(
        bundle,
        model.unwrap_python_model().net,
        prices,
        sessions,
        calendar,
        tickers,
        naive=naive_bundle(prices, tickers),
    )
    preds = in_traded_basis(served.predictions, traded)  # each day's prices as they traded
    targets = next_sessions(sessions, market.exchange)
    cutoff = dt.date.fromisoformat(bundle.cutoff) if bundle.cutoff else None
    frame = prediction_rows(
        preds,
        targets,
        registry.model_name,
        production.version,
        production.run_id,
        bundle.dataset_run_id,
        cutoff,
    )
    notes = prediction_notes(context.partition_keys, frame, targets, served.missing)
    for key, note in notes.items():
        note.update(model_version=production.version, model_kind=production.kind)
        if dt.date.fromisoformat(key) in served.fallback_days:
            note["served_by"] = (
                f"naive fallback: the {bundle.kind} model needs every ticker and some are missing"
            )
        context.add_asset_metadata(note, partition_key=key)
    return frame


@asset(
    group_name=GROUP,
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[
        RAW_PRICES.name,
        CORPORATE_ACTIONS.name,
        AssetDep(
            daily_predictions,
            partition_mapping=TimeWindowPartitionMapping(start_offset=-1, end_offset=-1),
        ),
    ],
    io_manager_key="postgres_io",
    metadata=PERFORMANCE_LOG.metadata(),
    kinds={"postgres"},
    description="For session D, the predictions whose target is D against D's close: "
    "errors, direction and interval hits, naive error; each partition's metadata is the "
    "rolling out-of-sample summary the retraining sensor reads.",
)
def performance_log(
    context: AssetExecutionContext,
    market: MarketResource,
    stocks_db: PostgresResource,
    operations: OperationsConfig,
) -> pd.DataFrame:
    sessions = sessions_among(context.partition_keys, market.exchange)
    if not sessions:
        return _empty(PERFORMANCE_COLUMNS)
    tickers, first, last = market.ticker_list(), min(sessions), max(sessions)
    lookback = first - dt.timedelta(days=3 * operations.rolling_window)
    history = sessions_between(lookback, last, market.exchange)
    with stocks_db.connect() as conn:
        predictions = queries.predictions_targeting(conn, sessions, tickers)
        actual = queries.closes_on(conn, sessions, tickers)
        earlier = queries.performance_between(conn, history[0], first)
    frame = score(predictions, actual) if len(predictions) else _empty(PERFORMANCE_COLUMNS)
    rows = pd.concat([earlier, frame], ignore_index=True) if len(earlier) else frame
    summaries = summaries_by_session(rows, sessions, history, operations.rolling_window)
    chart = len(context.partition_keys) <= CHART_MAX_PARTITIONS and len(frame) > 0
    for key in context.partition_keys:
        day = dt.date.fromisoformat(key)
        metadata: dict = {"scored": int((frame["trade_date"] == day).sum())}
        if day in summaries:
            metadata.update({f"rolling_{k}": v for k, v in summaries[day].items()})
        else:
            metadata["note"] = "exchange closed: nothing to score"
        if chart:
            metadata["predicted_vs_actual"] = MetadataValue.md(
                prediction_chart_markdown(rows, f"predicted vs actual to {key}")
            )
        context.add_asset_metadata(metadata, partition_key=key)
    return frame


@asset(
    group_name=GROUP,
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[daily_predictions],
    kinds={"json"},
    description="The old system's files: historical/{date}.json per session and "
    "latest_predictions.json for the newest one, under the export folder.",
)
def prediction_exports(
    context: AssetExecutionContext,
    market: MarketResource,
    stocks_db: PostgresResource,
    operations: OperationsConfig,
) -> MaterializeResult:
    folder = Path(operations.export_dir or stocks_db.settings().home / "predictions")
    sessions = sessions_among(context.partition_keys, market.exchange)
    written = []
    if sessions:
        with stocks_db.connect() as conn:
            frame = queries.predictions_made_on(conn, sessions)
            newest = queries.newest_prediction_day(conn)
        written = export_predictions(folder, frame, newest)
    return MaterializeResult(metadata={"folder": str(folder), "files_written": len(written)})


OPERATIONS_ASSETS = [daily_predictions, performance_log, prediction_exports]
