"""The operations group: daily predictions with the production model and the interval state
they leave, their scoring once the target session has closed, and the old system's JSON files.

`daily_predictions` and `interval_state` are one multi-asset: tomorrow's interval width depends
on whether today's interval held (ACI), and today's on yesterday's, so the two are computed
together, in date order, from the state stored for the day before the run. (Dagster's asset
graph is acyclic; a separate state asset between performance_log and daily_predictions would
close a cycle.)

No `from __future__ import annotations` here: Dagster reads the context and resource hints.
"""

import datetime as dt
from pathlib import Path

import pandas as pd
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    Output,
    TimeWindowPartitionMapping,
    asset,
    multi_asset,
)

from stock_assets.defs.partition_metadata import add_partition_metadata
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
from stock_assets.market.calendars import (
    next_sessions,
    previous_session,
    sessions_among,
    sessions_between,
)
from stock_assets.ml.adaptive import STATE_COLUMNS, adapt, realized_returns
from stock_assets.ml.baselines import naive_half_widths, with_naive_interval
from stock_assets.ml.charts import prediction_chart_markdown
from stock_assets.ml.features import SERVING_HISTORY
from stock_assets.ml.serving import SERVED_BY_MODEL, SERVED_BY_NAIVE, serve
from stock_assets.ml.volatility import recent_rows
from stock_assets.runtime import failpoints
from stock_assets.storage import queries
from stock_assets.storage.exports import export_predictions
from stock_assets.storage.prices import prices_until, stored_bars
from stock_assets.storage.schema import (
    CORPORATE_ACTIONS,
    DAILY_PREDICTIONS,
    INTERVAL_STATE,
    PERFORMANCE_COLUMNS,
    PERFORMANCE_LOG,
    PREDICTION_COLUMNS,
    RAW_PRICES,
)

GROUP = "operations"
CHART_MAX_PARTITIONS = 5


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in columns})


_PRICES = [RAW_PRICES.name, CORPORATE_ACTIONS.name]
_DAY_BEFORE = TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)


@multi_asset(
    specs=[
        AssetSpec(
            DAILY_PREDICTIONS.name,
            group_name=GROUP,
            deps=[*_PRICES, AssetDep(INTERVAL_STATE.name, partition_mapping=_DAY_BEFORE)],
            metadata=DAILY_PREDICTIONS.metadata(),
            kinds={"mlflow", "postgres"},
            description="After the close of D, the production model's prediction of the next "
            "session's close with its 80 % interval, per ticker. Features are read from each "
            f"ticker's last {SERVING_HISTORY:,} stored rows, where they equal training's (from "
            "its first row) "
            "to 1e-9; the interval is prediction ± "
            "q(αₜ)·σ̂ₜ, αₜ from interval_state.",
        ).with_io_manager_key("postgres_io"),
        AssetSpec(
            INTERVAL_STATE.name,
            group_name=GROUP,
            deps=[*_PRICES, AssetDep(INTERVAL_STATE.name, partition_mapping=_DAY_BEFORE)],
            metadata=INTERVAL_STATE.metadata(),
            kinds={"postgres"},
            description="Per ticker and session: the adapted miscoverage level αₜ (ACI) the "
            "day's 80 % interval was drawn at, q(αₜ), the volatility forecast σ̂ and whether "
            "the previous session's interval held. The next day's interval starts from it.",
        ).with_io_manager_key("postgres_io"),
    ],
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
)
def daily_predictions(
    context: AssetExecutionContext,
    market: MarketResource,
    stocks_db: PostgresResource,
    registry: ModelRegistryResource,
    operations: OperationsConfig,
):
    sessions = sessions_among(context.partition_keys, market.exchange)
    if not sessions:
        context.log.info("no session in these partitions: nothing to predict")
        yield Output(_empty(STATE_COLUMNS), output_name=INTERVAL_STATE.name)
        yield Output(_empty(PREDICTION_COLUMNS), output_name=DAILY_PREDICTIONS.name)
        return
    registry.setup()
    tickers = market.ticker_list()
    with stocks_db.connect() as conn:
        # a bounded tail, not every row since the first: the recursions forget their start
        # within SERVING_HISTORY rows (ml/features.py), σ̂ and the naive windows sooner
        prices = prices_until(
            conn, tickers, max(sessions), since=min(sessions), rows=SERVING_HISTORY
        )
        if prices.empty:
            raise ValueError("raw_prices holds no rows for the configured tickers")
        # resolved once: every row is stamped with the version that made it, even when a
        # promotion lands while this run works
        production = ensure_production(conn, registry.model_name, prices, context.log.warning)
        failpoints.hit("serving.after_resolve")
        model, bundle = load_version(conn, registry.model_name, production.version)
        traded = stored_bars(conn, tickers, min(sessions), max(sessions))
        seed = queries.interval_state_before(conn, min(sessions), tickers)
    calendar = sessions_between(prices["trade_date"].min(), max(sessions), market.exchange)
    net = model.unwrap_python_model().net
    served = serve(
        bundle, net, prices, sessions, calendar, tickers, lambda: naive_bundle(prices, tickers)
    )
    cutoff = dt.date.fromisoformat(bundle.cutoff) if bundle.cutoff else None
    previous = {d: previous_session(d, market.exchange) for d in sessions}
    bundles = {SERVED_BY_MODEL: bundle}
    if served.naive is not None:
        bundles[SERVED_BY_NAIVE] = served.naive
    adapted, state = adapt(
        served.predictions,
        bundles,
        realized_returns(recent_rows(prices, min(sessions), 1)),  # the returns ACI scores
        seed,
        previous,
        operations.aci_gamma,
        learn_after=cutoff,
    )
    adapted = with_naive_interval(adapted, naive_half_widths(prices, sessions))
    preds = in_traded_basis(adapted, traded)  # each day's prices as they traded
    targets = next_sessions(sessions, market.exchange)
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
    state_by_day = {d: rows for d, rows in state.groupby("trade_date")}  # once, not per key
    no_state = state.iloc[0:0]
    held: dict[str, dict] = {}
    for key, note in notes.items():
        note.update(model_version=production.version, model_kind=production.kind)
        if dt.date.fromisoformat(key) in served.fallback_days:
            note["served_by"] = (
                f"naive fallback: the {bundle.kind} model needs every ticker and some are missing"
            )
        day = state_by_day.get(dt.date.fromisoformat(key), no_state)
        held[key] = {
            "tickers": len(day),
            "mean_alpha": float(day["alpha"].mean()) if len(day) else float("nan"),
            "held_yesterday": int((day["covered"] == 1).sum()),
            "missed_yesterday": int((day["covered"] == 0).sum()),
            "aci_gamma": operations.aci_gamma,
        }
    add_partition_metadata(context, notes, DAILY_PREDICTIONS.name)
    add_partition_metadata(context, held, INTERVAL_STATE.name)
    yield Output(state, output_name=INTERVAL_STATE.name)  # first: the graph's order
    yield Output(frame, output_name=DAILY_PREDICTIONS.name)


@asset(
    group_name=GROUP,
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[
        RAW_PRICES.name,
        CORPORATE_ACTIONS.name,
        AssetDep(DAILY_PREDICTIONS.name, partition_mapping=_DAY_BEFORE),
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
    by_partition: dict[str, dict] = {}
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
        by_partition[key] = metadata
    add_partition_metadata(context, by_partition)
    return frame


@asset(
    group_name=GROUP,
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[DAILY_PREDICTIONS.name],
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
