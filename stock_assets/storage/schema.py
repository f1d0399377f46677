"""Every table of the `stocks` database in one place: names, partition columns, keys, columns
and the DDL of the tables the platform writes by hand (not through the IO manager).

Asset tables are typed from their first frame by the slice writer (`storage/writer.py`); their
partition column and key are declared here and handed to the IO manager as asset metadata.
The API imports its column lists and the alias name from here.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA = "public"
PRODUCTION_ALIAS = "production"


@dataclass(frozen=True)
class AssetTable:
    """An asset's table: the column a partition owns, and the key no two rows may share."""

    name: str
    partition_column: str | None
    primary_key: tuple[str, ...] = ()

    def metadata(self) -> dict:
        """The IO manager reads these from the asset's definition metadata."""
        out: dict = {"partition_column": self.partition_column}
        if self.primary_key:
            out["primary_key"] = list(self.primary_key)
        return out


RAW_PRICES = AssetTable("raw_prices", "trade_date", ("trade_date", "ticker"))
DAILY_PREDICTIONS = AssetTable("daily_predictions", "as_of_date", ("as_of_date", "ticker"))
PERFORMANCE_LOG = AssetTable("performance_log", "trade_date", ("trade_date", "ticker"))
# one per dataset run (the retraining group)
PROCESSED_FEATURES = AssetTable("processed_features", "dataset_run_id")
SCALERS = AssetTable("scalers", "dataset_run_id")
TUNED_PARAMS = AssetTable("tuned_params", "dataset_run_id")
CANDIDATE_MODEL = AssetTable("candidate_model", "dataset_run_id")
PRODUCTION_MODEL = AssetTable("production_model", "dataset_run_id")

PRICE_COLUMNS = ("trade_date", "ticker", "open", "high", "low", "close", "adj_close", "volume")

PREDICTION_COLUMNS: tuple[str, ...] = (
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

PERFORMANCE_COLUMNS: tuple[str, ...] = (
    "trade_date",
    "ticker",
    "as_of_date",
    "model_version",
    "in_sample",
    "last_close",
    "predicted_close",
    "lower",
    "upper",
    "actual_close",
    "abs_error",
    "pct_error",
    "naive_abs_error",
    "direction_hit",
    "interval_hit",
)

# Tables written outside the IO manager, created on first use.
WRITES_TABLE = "table_writes"
WRITES_CHANNEL = "stock_assets_writes"
WRITES_DDL = """
CREATE TABLE IF NOT EXISTS table_writes (
    table_name TEXT PRIMARY KEY,
    writes BIGINT NOT NULL,
    written_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""

DATASET_RUNS_DDL = """
CREATE TABLE IF NOT EXISTS dataset_runs (
    dataset_run_id TEXT PRIMARY KEY,
    cutoff DATE NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    reason TEXT NOT NULL,
    requested_by_run TEXT
)
"""

MODEL_PROMOTIONS_DDL = """
CREATE TABLE IF NOT EXISTS model_promotions (
    id BIGSERIAL PRIMARY KEY,
    promoted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    model_name TEXT NOT NULL,
    previous_version TEXT,
    new_version TEXT NOT NULL,
    dataset_run_id TEXT,
    metrics JSONB,
    reason TEXT NOT NULL
)
"""

REPLAY_PROGRESS_DDL = """
CREATE TABLE IF NOT EXISTS replay_progress (
    session DATE PRIMARY KEY,
    completed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    sensor_cursor TEXT,
    retraining TEXT,
    reason TEXT
)
"""
