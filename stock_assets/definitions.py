"""The code location: assets, checks, jobs, schedules and resources, built from the settings."""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from stock_assets.assets.ingestion import build_calendar_complete, build_raw_prices
from stock_assets.assets.retraining import RetrainingConfig, build_retraining
from stock_assets.mlflow_resource import end_mlflow_on_run_finished, mlflow_tracking_managed
from stock_assets.partitions import dataset_runs_partitions, trading_days_partitions
from stock_assets.resources import MarketResource, PostgresResource
from stock_assets.settings import Settings, load_settings, retraining_settings
from stock_assets.sources import PriceSource, source_from_settings
from stock_assets.storage.io_manager import PostgresPandasIOManager


def build_definitions(
    settings: Settings | None = None,
    source: PriceSource | None = None,
    retraining: dict | None = None,
) -> Definitions:
    """The whole graph from the settings; `source` overrides the configured price source."""
    settings = settings or load_settings()
    source = source or source_from_settings(settings)
    trading_days = trading_days_partitions(
        settings.start_date or source.default_start, settings.timezone
    )
    raw_prices = build_raw_prices(trading_days)
    calendar_complete = build_calendar_complete(raw_prices)
    retraining_assets, retraining_checks = build_retraining(raw_prices)

    ingest_job = define_asset_job(
        "ingest_prices",
        selection=AssetSelection.groups("ingestion"),
        partitions_def=trading_days,
        description="Ingest raw prices for a session (or a range, in one run).",
    )

    @schedule(
        name="ingest_after_close",
        job=ingest_job,
        cron_schedule="30 18 * * 1-5",
        execution_timezone=settings.timezone,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Every weekday at 18:30 exchange time, ingest that day's partition.",
    )
    def ingest_after_close(context: ScheduleEvaluationContext) -> RunRequest:
        key = context.scheduled_execution_time.strftime("%Y-%m-%d")
        return RunRequest(run_key=key, partition_key=key)

    retrain_job = define_asset_job(
        "retrain",
        selection=AssetSelection.groups("retraining"),
        partitions_def=dataset_runs_partitions,
        hooks={end_mlflow_on_run_finished},
        tags={"stock_assets/kind": "retraining"},
        description="One dataset run: features → scalers → tuning → candidate → "
        "(beats_production) → production alias.",
    )

    stocks_db = PostgresResource(database="stocks")
    tickers = list(settings.tickers or source.default_tickers)
    return Definitions(
        assets=[raw_prices, *retraining_assets],
        asset_checks=[calendar_complete, *retraining_checks],
        jobs=[ingest_job, retrain_job],
        schedules=[ingest_after_close],
        resources={
            "postgres_io": PostgresPandasIOManager(db=stocks_db),
            "stocks_db": stocks_db,
            "price_source": source,
            "market": MarketResource(
                tickers=tickers,
                exchange=settings.exchange,
                chart_max_partitions=settings.chart_max_partitions,
            ),
            "retraining": RetrainingConfig(**(retraining or retraining_settings())),
            "mlflow": mlflow_tracking_managed,
        },
    )


defs = build_definitions()
