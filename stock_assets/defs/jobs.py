"""Jobs, selected by group; partitions come from the assets (re-timed by the code location)."""

from dagster import AssetCheckKey, AssetKey, AssetSelection, define_asset_job

from stock_assets.defs.tags import KIND_TAG, RETRAIN_JOB
from stock_assets.defs.tracking import end_mlflow_on_run_finished

ingest_prices = define_asset_job(
    "ingest_prices",
    selection=AssetSelection.groups("ingestion"),
    description="Ingest raw prices for a session (or a range, in one run).",
)
daily_operations = define_asset_job(
    "daily_operations",
    selection=AssetSelection.groups("ingestion", "operations"),
    description="raw_prices → daily_predictions → performance_log → JSON files for a "
    "session (or a range, in one run).",
)
retrain = define_asset_job(
    RETRAIN_JOB,
    selection=AssetSelection.groups("retraining"),
    hooks={end_mlflow_on_run_finished},
    tags={KIND_TAG: "retraining"},
    description="One dataset run: features → scalers → tuning → candidate → "
    "(beats_production) → production alias.",
)

audit_prices = define_asset_job(
    "audit_prices",
    selection=AssetSelection.checks(AssetCheckKey(AssetKey("raw_prices"), "calendar_complete")),
    description="calendar_complete over the whole stored history (daily runs check the "
    "sessions they wrote): run it after restating or deleting rows, or weekly.",
)

JOBS = [ingest_prices, daily_operations, retrain, audit_prices]
