"""The code location: the module-level definitions of `stock_assets/defs/`, re-timed to the
configured trading_days and given resources built from the settings. Only assembly here."""

from __future__ import annotations

import dataclasses

from dagster import Definitions

from stock_assets.defs import (
    alerts,
    demotion,
    ingestion,
    jobs,
    operations,
    retraining,
    schedules,
    sensors,
)
from stock_assets.defs.io_manager import PostgresPandasIOManager
from stock_assets.defs.partitions import retimed, trading_days_partitions
from stock_assets.defs.resources import (
    AlertChannels,
    MarketResource,
    ModelRegistryResource,
    OperationsConfig,
    PolicyConfig,
    PostgresResource,
    PriceSourceResource,
    RetrainingConfig,
)
from stock_assets.defs.tracking import mlflow_tracking_managed
from stock_assets.market.sources import PriceSource, source_from_settings
from stock_assets.ml.threads import limit_torch_threads
from stock_assets.settings import PolicySettings, Settings, load_settings

ASSETS = [ingestion.raw_prices, *retraining.RETRAINING_ASSETS, *operations.OPERATIONS_ASSETS]
CHECKS = [ingestion.calendar_complete, retraining.beats_production]


def build_definitions(
    settings: Settings | None = None,
    source: PriceSource | None = None,
    retraining: dict | None = None,
    thresholds: PolicySettings | None = None,
) -> Definitions:
    """The whole graph on the settings; arguments override the price source, fields of the
    retraining settings and the sensor's thresholds (tests, benchmarks, demo, replay)."""
    settings = settings or load_settings()
    limit_torch_threads(settings.torch_threads)  # every process that runs steps loads this
    source = source or source_from_settings(settings)
    market = settings.market
    retraining_settings = dataclasses.replace(settings.retraining, **(retraining or {}))
    policy = (thresholds or settings.policy).validate()
    days = trading_days_partitions(
        market.start_date or source.default_start, market.timezone, source.data_end
    )
    stocks_db = PostgresResource(database="stocks")
    return Definitions(
        assets=retimed(ASSETS, days),
        asset_checks=CHECKS,
        jobs=[*jobs.JOBS, demotion.demote_production],
        schedules=[
            schedules.daily_after_close(market.timezone, market.exchange),
            schedules.weekly_audit(market.timezone),
        ],
        sensors=[sensors.retraining_sensor, *alerts.ALERT_SENSORS],
        resources={
            "postgres_io": PostgresPandasIOManager(db=stocks_db),
            "stocks_db": stocks_db,
            "price_source": PriceSourceResource.of(source),
            "market": MarketResource(
                tickers=list(market.tickers or source.default_tickers),
                exchange=market.exchange,
                chart_max_partitions=market.chart_max_partitions,
                settle_minutes=market.settle_minutes,
            ),
            "retraining": RetrainingConfig.of(retraining_settings),
            "operations": OperationsConfig.of(settings.operations),
            "policy": PolicyConfig.of(policy),
            "registry": ModelRegistryResource(model_name=retraining_settings.model_name),
            "mlflow": mlflow_tracking_managed,
            "alerts": AlertChannels.of(settings.alerts),
        },
    )


defs = build_definitions()
