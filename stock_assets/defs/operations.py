"""The operations group: daily predictions with the production model, their scoring once the
target session has closed, and the old system's JSON files.

No `from __future__ import annotations` here: Dagster reads the context and resource hints.
"""

import datetime as dt
import json
from pathlib import Path

import pandas as pd
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    ConfigurableResource,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from stock_assets.defs.resources import MarketResource, PostgresResource
from stock_assets.defs.tracking import ModelRegistryResource
from stock_assets.lifecycle.registry import ensure_production, load_production
from stock_assets.lifecycle.scoring import PERFORMANCE_COLUMNS, score, summaries_by_session
from stock_assets.market.calendars import sessions_between
from stock_assets.market.quality import calendar_gaps
from stock_assets.ml.bundle import predict_from_prices
from stock_assets.ml.charts import prediction_chart_markdown
from stock_assets.storage.prices import prices_until
from stock_assets.storage.writer import query_frame, table_columns

GROUP = "operations"
PREDICTION_COLUMNS = (
    "as_of_date",
    "target_date",
    "ticker",
    "last_close",
    "predicted_close",
    "lower",
    "upper",
    "predicted_return",
    "model_name",
    "model_version",
    "mlflow_run_id",
    "dataset_run_id",
    "in_sample",
    "created_at",
)


class OperationsConfig(ConfigurableResource):
    """Daily operations: scoring window and where the JSON files go."""

    rolling_window: int = 20
    export_dir: str | None = None  # default: $STOCK_ASSETS_HOME/predictions


def _sessions(keys: list[str], exchange: str) -> list[dt.date]:
    days = [dt.date.fromisoformat(k) for k in keys]
    open_days = set(sessions_between(min(days), max(days), exchange))
    return [d for d in days if d in open_days]


def next_sessions(days: list[dt.date], exchange: str) -> dict[dt.date, dt.date]:
    """T(D): the session after each D."""
    ahead = sessions_between(min(days), max(days) + dt.timedelta(days=14), exchange)
    return {d: next(s for s in ahead if s > d) for d in days}


def _empty_predictions() -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in PREDICTION_COLUMNS})


def build_operations(raw_prices: AssetsDefinition, partitions_def) -> list[AssetsDefinition]:
    @asset(
        group_name=GROUP,
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[raw_prices],
        io_manager_key="postgres_io",
        metadata={"partition_column": "as_of_date", "primary_key": ["as_of_date", "ticker"]},
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
        sessions = _sessions(context.partition_keys, market.exchange)
        if not sessions:
            context.log.info("no session in these partitions: nothing to predict")
            return _empty_predictions()
        registry.setup()
        tickers = market.ticker_list()
        with stocks_db.connect() as conn:
            prices = prices_until(conn, tickers, max(sessions))
            missing = _missing_raw(prices, tickers, sessions, market.exchange)
            if missing:
                raise ValueError(missing)
            production = ensure_production(conn, registry.model_name, prices)
        model, bundle = load_production(registry.model_name)  # once per run
        net = model.unwrap_python_model().net
        preds = predict_from_prices(bundle, net, prices, as_of=sessions)
        targets = next_sessions(sessions, market.exchange)
        cutoff = dt.date.fromisoformat(bundle.cutoff) if bundle.cutoff else None
        frame = pd.DataFrame(
            {
                "as_of_date": preds["as_of_date"].to_numpy(),
                "target_date": [targets[d] for d in preds["as_of_date"]],
                "ticker": preds["ticker"].to_numpy(),
                "last_close": preds["last_close"].to_numpy(),
                "predicted_close": preds["predicted_close"].to_numpy(),
                "lower": preds["lower"].to_numpy(),
                "upper": preds["upper"].to_numpy(),
                "predicted_return": preds["predicted_return"].to_numpy(),
                "model_name": registry.model_name,
                "model_version": production.version,
                "mlflow_run_id": production.run_id or "",
                "dataset_run_id": bundle.dataset_run_id or "",
                "in_sample": [cutoff is not None and d <= cutoff for d in preds["as_of_date"]],
            }
        )
        frame["created_at"] = pd.Timestamp(dt.datetime.now(dt.UTC))
        for key in context.partition_keys:
            day = dt.date.fromisoformat(key)
            rows = frame[frame["as_of_date"] == day]
            context.add_asset_metadata(
                {
                    "rows": len(rows),
                    "model_version": production.version,
                    "model_kind": production.kind,
                    "in_sample": bool(rows["in_sample"].any()) if len(rows) else False,
                    "target_date": str(targets[day]) if day in targets else "",
                },
                partition_key=key,
            )
        return frame.sort_values(["as_of_date", "ticker"], ignore_index=True)

    @asset(
        group_name=GROUP,
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[
            raw_prices,
            AssetDep(
                daily_predictions,
                partition_mapping=TimeWindowPartitionMapping(start_offset=-1, end_offset=-1),
            ),
        ],
        io_manager_key="postgres_io",
        metadata={"partition_column": "trade_date", "primary_key": ["trade_date", "ticker"]},
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
        sessions = _sessions(context.partition_keys, market.exchange)
        if not sessions:
            return pd.DataFrame({c: [] for c in PERFORMANCE_COLUMNS})
        tickers = market.ticker_list()
        first, last = min(sessions), max(sessions)
        history = sessions_between(
            first - dt.timedelta(days=3 * operations.rolling_window), last, market.exchange
        )
        with stocks_db.connect() as conn, conn.cursor() as cur:
            have_predictions = table_columns(cur, "daily_predictions") is not None
            have_log = table_columns(cur, "performance_log") is not None
            conn.rollback()
            predictions = (
                query_frame(
                    conn,
                    "SELECT * FROM daily_predictions WHERE target_date = ANY(%s) "
                    "AND ticker = ANY(%s)",
                    (sessions, tickers),
                )
                if have_predictions
                else pd.DataFrame()
            )
            actual = query_frame(
                conn,
                "SELECT trade_date, ticker, close FROM raw_prices "
                "WHERE trade_date = ANY(%s) AND ticker = ANY(%s)",
                (sessions, tickers),
            )
            earlier = (
                query_frame(
                    conn,
                    "SELECT * FROM performance_log WHERE trade_date >= %s AND trade_date < %s",
                    (history[0], first),
                )
                if have_log
                else pd.DataFrame(columns=list(PERFORMANCE_COLUMNS))
            )
        frame = (
            score(predictions, actual)
            if len(predictions)
            else pd.DataFrame({c: [] for c in PERFORMANCE_COLUMNS})
        )
        rows = pd.concat([earlier, frame], ignore_index=True) if len(earlier) else frame
        summaries = summaries_by_session(rows, sessions, history, operations.rolling_window)
        chart = len(context.partition_keys) <= 5 and len(frame) > 0
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
        partitions_def=partitions_def,
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
        sessions = _sessions(context.partition_keys, market.exchange)
        written = []
        if sessions:
            with stocks_db.connect() as conn:
                frame = query_frame(
                    conn,
                    "SELECT * FROM daily_predictions WHERE as_of_date = ANY(%s) "
                    "ORDER BY as_of_date, ticker",
                    (sessions,),
                )
                newest = query_frame(conn, "SELECT max(as_of_date) AS d FROM daily_predictions")
            (folder / "historical").mkdir(parents=True, exist_ok=True)
            for day, rows in frame.groupby("as_of_date"):
                path = folder / "historical" / f"{day}.json"
                _write_json(path, _document(day, rows))
                written.append(path)
                if day == newest["d"].iloc[0]:
                    _write_json(folder / "latest_predictions.json", _document(day, rows))
        return MaterializeResult(metadata={"folder": str(folder), "files_written": len(written)})

    return [daily_predictions, performance_log, prediction_exports]


def _missing_raw(
    prices: pd.DataFrame, tickers: list[str], sessions: list[dt.date], exchange: str
) -> str | None:
    """A clear message when raw_prices lacks a session in the prediction window."""
    if prices.empty:
        return "raw_prices holds no rows for the configured tickers"
    first = prices["trade_date"].min()
    expected = sessions_between(first, max(sessions), exchange)
    gaps = calendar_gaps(prices[["trade_date", "ticker"]], expected, tickers)
    if gaps.empty:
        return None
    shown = ", ".join(f"{r.ticker} on {r.trade_date}" for r in gaps.head(5).itertuples())
    return (
        f"raw_prices is missing {len(gaps)} row(s) in the prediction window ({shown}): "
        "materialize those raw_prices partitions first"
    )


def _document(day: dt.date, rows: pd.DataFrame) -> dict:
    return {
        "as_of_date": str(day),
        "target_date": str(rows["target_date"].iloc[0]),
        "model": {
            "name": rows["model_name"].iloc[0],
            "version": rows["model_version"].iloc[0],
            "dataset_run_id": rows["dataset_run_id"].iloc[0],
        },
        "predictions": {
            r.ticker: {
                "last_close": float(r.last_close),
                "predicted_close": float(r.predicted_close),
                "lower": float(r.lower),
                "upper": float(r.upper),
                "predicted_return": float(r.predicted_return),
                "in_sample": bool(r.in_sample),
            }
            for r in rows.itertuples()
        },
    }


def _write_json(path: Path, document: dict) -> None:
    """Write beside, then rename: a reader never sees a half-written file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=1, default=str, allow_nan=False))
    tmp.replace(path)
