"""The code location: assets, checks, jobs, schedules, sensors and resources, from the settings."""

from dagster import (
    AssetSelection,
    Backoff,
    DefaultScheduleStatus,
    Definitions,
    RetryPolicy,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from stock_assets.defs.alerts import ALERT_SENSORS
from stock_assets.defs.ingestion import build_calendar_complete, build_raw_prices
from stock_assets.defs.io_manager import PostgresPandasIOManager
from stock_assets.defs.operations import OperationsConfig, build_operations
from stock_assets.defs.partitions import dataset_runs_partitions, trading_days_partitions
from stock_assets.defs.resources import MarketResource, PostgresResource
from stock_assets.defs.retraining import RetrainingConfig, build_retraining
from stock_assets.defs.sensors import build_retraining_sensor
from stock_assets.defs.tracking import (
    ModelRegistryResource,
    end_mlflow_on_run_finished,
    mlflow_tracking_managed,
)
from stock_assets.lifecycle.policy import Thresholds
from stock_assets.market.calendars import is_session
from stock_assets.market.sources import PriceSource, source_from_settings
from stock_assets.settings import (
    Settings,
    load_settings,
    operations_settings,
    retraining_settings,
)


def build_definitions(
    settings: Settings | None = None,
    source: PriceSource | None = None,
    retraining: dict | None = None,
    thresholds: Thresholds | None = None,
) -> Definitions:
    """The whole graph from the settings; arguments override the price source, the retraining
    budget and the sensor's thresholds (tests, benchmarks)."""
    settings = settings or load_settings()
    source = source or source_from_settings(settings)
    ops = operations_settings()
    retraining = {**retraining_settings(), **(retraining or {})}
    thresholds = (thresholds or Thresholds(**ops["thresholds"])).validate()
    trading_days = trading_days_partitions(
        settings.start_date or source.default_start, settings.timezone
    )
    retry = None
    if ops["ingest_retries"] > 0:  # late data: try again later, backing off
        retry = RetryPolicy(
            max_retries=ops["ingest_retries"],
            delay=ops["ingest_retry_seconds"],
            backoff=Backoff.EXPONENTIAL,
        )
    raw_prices = build_raw_prices(trading_days, retry)
    calendar_complete = build_calendar_complete(raw_prices)
    retraining_assets, retraining_checks = build_retraining(raw_prices)
    operations_assets = build_operations(raw_prices, trading_days)

    ingest_job = define_asset_job(
        "ingest_prices",
        selection=AssetSelection.groups("ingestion"),
        partitions_def=trading_days,
        description="Ingest raw prices for a session (or a range, in one run).",
    )
    daily_job = define_asset_job(
        "daily_operations",
        selection=AssetSelection.groups("ingestion", "operations"),
        partitions_def=trading_days,
        description="raw_prices → daily_predictions → performance_log → JSON files for a "
        "session (or a range, in one run).",
    )
    retrain_job = define_asset_job(
        "retrain",
        selection=AssetSelection.groups("retraining"),
        partitions_def=dataset_runs_partitions,
        hooks={end_mlflow_on_run_finished},
        tags={"stock_assets/kind": "retraining"},
        description="One dataset run: features → scalers → tuning → candidate → "
        "(beats_production) → production alias.",
    )

    @schedule(
        name="daily_after_close",
        job=daily_job,
        cron_schedule="30 18 * * 1-5",
        execution_timezone=settings.timezone,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Weekdays at 18:30 exchange time: that session's daily operations; "
        "exchange holidays are skipped.",
    )
    def daily_after_close(context: ScheduleEvaluationContext):
        day = context.scheduled_execution_time.date()
        if not is_session(day, settings.exchange):
            return SkipReason(f"{day} is not a {settings.exchange} session (holiday)")
        key = day.isoformat()
        return RunRequest(run_key=key, partition_key=key)

    stocks_db = PostgresResource(database="stocks")
    tickers = list(settings.tickers or source.default_tickers)
    return Definitions(
        assets=[raw_prices, *retraining_assets, *operations_assets],
        asset_checks=[calendar_complete, *retraining_checks],
        jobs=[ingest_job, daily_job, retrain_job],
        schedules=[daily_after_close],
        sensors=[build_retraining_sensor(thresholds), *ALERT_SENSORS],
        resources={
            "postgres_io": PostgresPandasIOManager(db=stocks_db),
            "stocks_db": stocks_db,
            "price_source": source,
            "market": MarketResource(
                tickers=tickers,
                exchange=settings.exchange,
                chart_max_partitions=settings.chart_max_partitions,
            ),
            "retraining": RetrainingConfig(**retraining),
            "registry": ModelRegistryResource(model_name=retraining["model_name"]),
            "operations": OperationsConfig(
                rolling_window=ops["rolling_window"], export_dir=ops["export_dir"]
            ),
            "mlflow": mlflow_tracking_managed,
        },
    )


defs = build_definitions()
