"""Every table of the `stocks` database in one place: names, partition columns, keys, columns
and the DDL of the tables the platform writes by hand (not through the IO manager).

Asset tables are typed from their first frame by the slice writer (`storage/writer.py`); their
partition column and key are declared here and handed to the IO manager as asset metadata.
The API imports its column lists and the alias name from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from stock_assets.market.sources.base import PRICE_COLUMNS as FETCHED_COLUMNS

SCHEMA = "public"
PRODUCTION_ALIAS = "production"


@dataclass(frozen=True)
class AssetTable:
    """An asset's table: the column a partition owns, and the key no two rows may share."""

    name: str
    partition_column: str | None
    primary_key: tuple[str, ...] = ()
    # columns added after the table shipped, (name, Postgres type): an older state's table
    # gains them on its next write (older rows hold NULL there)
    added: tuple[tuple[str, str], ...] = ()
    # for readers (the API's lookups); `+column`: INCLUDEd, a covering index (storage/writer.py)
    indexes: tuple[tuple[str, ...], ...] = ()

    def metadata(self) -> dict:
        """The IO manager reads these from the asset's definition metadata."""
        out: dict = {"partition_column": self.partition_column}
        if self.primary_key:
            out["primary_key"] = list(self.primary_key)
        if self.added:
            out["added_columns"] = {name: typ for name, typ in self.added}
        if self.indexes:
            out["indexes"] = [list(columns) for columns in self.indexes]
        return out


# as traded; (ticker, trade_date) holding the bars: serving reads each ticker's newest rows (a
# bounded tail) from the index alone, not one heap page per row (the table is in date order)
RAW_PRICES = AssetTable(
    "raw_prices",
    "trade_date",
    ("trade_date", "ticker"),
    indexes=(("ticker", "trade_date", "+open", "+high", "+low", "+close", "+volume"),),
)
CORPORATE_ACTIONS = AssetTable("corporate_actions", "trade_date", ("trade_date", "ticker"))
# The naive baseline's 80 % interval (ml/baselines.py), scored next to the served one.
NAIVE_INTERVAL_COLUMNS = (("naive_lower", "DOUBLE PRECISION"), ("naive_upper", "DOUBLE PRECISION"))
# (ticker, as_of_date): each ticker's newest prediction and its history are index lookups
DAILY_PREDICTIONS = AssetTable(
    "daily_predictions",
    "as_of_date",
    ("as_of_date", "ticker"),
    NAIVE_INTERVAL_COLUMNS,
    (("ticker", "as_of_date"),),
)
INTERVAL_STATE = AssetTable("interval_state", "trade_date", ("trade_date", "ticker"))
PERFORMANCE_LOG = AssetTable(
    "performance_log",
    "trade_date",
    ("trade_date", "ticker"),
    (*NAIVE_INTERVAL_COLUMNS, ("naive_interval_hit", "BOOLEAN")),
)
# one per dataset run (the retraining group)
PROCESSED_FEATURES = AssetTable("processed_features", "dataset_run_id")
SCALERS = AssetTable("scalers", "dataset_run_id")
TUNED_PARAMS = AssetTable("tuned_params", "dataset_run_id")
CANDIDATE_MODEL = AssetTable("candidate_model", "dataset_run_id")
PRODUCTION_MODEL = AssetTable("production_model", "dataset_run_id")

# raw_prices: the source's bars as traded (market/ingest.py::BAR_COLUMNS) plus `source` and
# `ingested_at`; corporate_actions: splits and cash dividends on their ex-dates, with `source` and
# `known_at` (when the platform learned of them).
# What readers of prices get: adjusted point in time (`adj_close` equals `close` there; it is
# kept because models logged before the as-traded store name it in their input signature).
PRICE_COLUMNS = ("trade_date", "ticker", "open", "high", "low", "close", "adj_close", "volume")

# corporate_actions as the slice writer would type it, for the view to exist before the first
# action does.
CORPORATE_ACTIONS_DDL = """
CREATE TABLE IF NOT EXISTS corporate_actions (
    trade_date DATE,
    ticker TEXT,
    split_ratio DOUBLE PRECISION,
    dividend DOUBLE PRECISION,
    source TEXT,
    known_at TIMESTAMPTZ,
    PRIMARY KEY (trade_date, ticker)
)
"""

# raw_prices adjusted with every action known now: k_e = P_e / (s_e (P_e + D_e)) multiplies
# every price before e, s_e every volume (stock_assets/market/adjust.py, the same rule).
ADJUSTED_PRICES_VIEW = """
CREATE OR REPLACE VIEW adjusted_prices AS
SELECT trade_date, ticker, open * k AS open, high * k AS high, low * k AS low,
       close * k AS close, volume * s AS volume, source, ingested_at
FROM (
    SELECT p.*,
           exp(coalesce(sum(ln(p.close) - ln(a.split_ratio * (p.close + a.dividend))) OVER w, 0))
               AS k,
           exp(coalesce(sum(ln(a.split_ratio)) OVER w, 0)) AS s
    FROM raw_prices p LEFT JOIN corporate_actions a USING (trade_date, ticker)
    WINDOW w AS (PARTITION BY p.ticker ORDER BY p.trade_date
                 ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
) adjusted
"""

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
    "served_by",
    "naive_lower",
    "naive_upper",
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
    "naive_lower",
    "naive_upper",
    "naive_interval_hit",
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

# The promotion journal (lifecycle/journal.py): a row is written `pending` before the alias
# moves and marked `done` after; `abandoned` when the alias never moved. `action` tells
# rollbacks (which undo) from moves forward; `actor` says who asked.
MODEL_PROMOTIONS_DDL = """
CREATE TABLE IF NOT EXISTS model_promotions (
    id BIGSERIAL PRIMARY KEY,
    promoted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    model_name TEXT NOT NULL,
    previous_version TEXT,
    new_version TEXT NOT NULL,
    dataset_run_id TEXT,
    metrics JSONB,
    reason TEXT NOT NULL,
    action TEXT NOT NULL DEFAULT 'promote',
    actor TEXT NOT NULL DEFAULT 'unknown',
    status TEXT NOT NULL DEFAULT 'done',
    finished_at TIMESTAMPTZ
);
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS action TEXT NOT NULL DEFAULT 'promote';
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS actor TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS status TEXT NOT NULL DEFAULT 'done';
ALTER TABLE model_promotions ADD COLUMN IF NOT EXISTS finished_at TIMESTAMPTZ
"""
PROMOTION_ACTIONS = ("bootstrap", "promote", "rollback", "repair")
PROMOTION_ACTORS = ("check", "cli", "bootstrap", "reconcile")

# SHA-256 of what loading a registered version executes and reads, recorded at registration.
MODEL_DIGESTS_DDL = """
CREATE TABLE IF NOT EXISTS model_digests (
    model_name TEXT NOT NULL,
    version TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    weights_sha256 TEXT,
    bundle_sha256 TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (model_name, version)
)
"""

# Which run holds the one retraining allowed at a time (lifecycle/retraining_lease.py).
RETRAINING_LEASE_DDL = """
CREATE TABLE IF NOT EXISTS retraining_lease (
    model_name TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    dataset_run_id TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    taken_at TIMESTAMPTZ NOT NULL DEFAULT now()
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

# Rows a fetch brought that broke a blocking rule (market/validation.py): kept out of
# raw_prices, with the values as fetched. Replaced per ingested slice of trade_date.
RAW_PRICES_REJECTED = AssetTable("raw_prices_rejected", "trade_date")  # duplicates too: no key
RAW_PRICES_REJECTED_DDL = """
CREATE TABLE IF NOT EXISTS raw_prices_rejected (
    trade_date DATE NOT NULL,
    ticker TEXT NOT NULL,
    open DOUBLE PRECISION,
    high DOUBLE PRECISION,
    low DOUBLE PRECISION,
    close DOUBLE PRECISION,
    volume DOUBLE PRECISION,
    dividend DOUBLE PRECISION,
    split_ratio DOUBLE PRECISION,
    rule TEXT NOT NULL,
    detail TEXT,
    source TEXT,
    run_id TEXT,
    rejected_at TIMESTAMPTZ NOT NULL
)
"""
REJECTED_COLUMNS = (*FETCHED_COLUMNS, "rule", "detail", "source", "run_id", "rejected_at")

# Sessions a configured ticker has no raw_prices row for, and why (no answer, source error,
# rejected): what /health and the dashboard show. Replaced per ingested slice of trade_date.
RAW_PRICES_MISSING = AssetTable("raw_prices_missing", "trade_date", ("trade_date", "ticker"))
RAW_PRICES_MISSING_DDL = """
CREATE TABLE IF NOT EXISTS raw_prices_missing (
    trade_date DATE NOT NULL,
    ticker TEXT NOT NULL,
    reason TEXT NOT NULL,
    run_id TEXT,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (trade_date, ticker)
)
"""
MISSING_COLUMNS = ("trade_date", "ticker", "reason", "run_id", "recorded_at")
