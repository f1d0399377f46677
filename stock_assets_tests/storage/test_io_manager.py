"""The Postgres IO manager under real Dagster execution, for every partition shape."""

import datetime as dt

import pandas as pd
import pytest
from dagster import (
    AllPartitionMapping,
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    DagsterInstance,
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    asset,
    materialize,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.defs.io_manager import PostgresPandasIOManager
from stock_assets.defs.partitions import trading_days_partitions
from stock_assets.defs.resources import PostgresResource
from stock_assets_tests.conftest import query

DAYS = trading_days_partitions("2024-01-01", "America/New_York")
RUNS = DynamicPartitionsDefinition(name="test_runs")
META = {"partition_column": "day", "primary_key": ["day", "n"]}


def _resources():
    return {"io_manager": PostgresPandasIOManager(db=PostgresResource())}


def _rows_for(keys: list[str], version: int) -> pd.DataFrame:
    days = [dt.date.fromisoformat(k) for k in keys]
    return pd.DataFrame(
        {
            "day": pd.Series(days * 2, dtype=object),
            "n": [0] * len(days) + [1] * len(days),
            "version": version,
        }
    )


@asset(partitions_def=DAYS, metadata=META, backfill_policy=BackfillPolicy.single_run())
def daily(context: AssetExecutionContext) -> pd.DataFrame:
    return _rows_for(context.partition_keys, int(context.run.tags.get("version", "1")))


@asset(partitions_def=DAYS, metadata=META)
def doubled(daily: pd.DataFrame) -> pd.DataFrame:
    return daily.assign(version=daily["version"] * 2)


@asset(
    metadata={"primary_key": ["day", "n"]},
    ins={"daily": AssetIn(partition_mapping=AllPartitionMapping())},
)
def everything(daily: pd.DataFrame) -> pd.DataFrame:
    return daily


@asset(
    partitions_def=RUNS,
    metadata={"partition_column": "run_id"},
    ins={"daily": AssetIn(partition_mapping=AllPartitionMapping())},
)
def per_run(context: AssetExecutionContext, daily: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"run_id": context.partition_key, "rows_seen": [len(daily)]})


def _range(start: str, end: str, version: int = 1) -> dict[str, str]:
    return {
        ASSET_PARTITION_RANGE_START_TAG: start,
        ASSET_PARTITION_RANGE_END_TAG: end,
        "version": str(version),
    }


def test_one_key_then_downstream_loads_that_key(stocks_url):
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [daily, doubled], partition_key="2024-01-03", resources=_resources(), instance=instance
    )
    assert result.success
    assert query(stocks_url, "SELECT day::text, n, version FROM doubled ORDER BY n") == [
        ("2024-01-03", 0, 2),
        ("2024-01-03", 1, 2),
    ]


def test_single_run_backfill_replaces_its_range(stocks_url):
    instance = DagsterInstance.ephemeral()
    for version in (1, 2):
        result = materialize(
            [daily],
            tags=_range("2024-01-02", "2024-01-12", version),
            resources=_resources(),
            instance=instance,
        )
        assert result.success
    materialize(
        [daily],
        tags=_range("2024-01-05", "2024-01-08", 3),
        resources=_resources(),
        instance=instance,
    )
    rows = query(
        stocks_url, "SELECT day::text, count(*), max(version) FROM daily GROUP BY day ORDER BY day"
    )
    assert [r[0] for r in rows] == [
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
        "2024-01-08",
        "2024-01-09",
        "2024-01-10",
        "2024-01-11",
        "2024-01-12",
    ]
    assert all(count == 2 for _, count, _ in rows)
    assert [v for _, _, v in rows] == [2, 2, 2, 3, 3, 2, 2, 2, 2]
    events = instance.get_latest_materialization_event(daily.key)
    assert events is not None


def test_unpartitioned_reads_all_partitions(stocks_url):
    instance = DagsterInstance.ephemeral()
    materialize(
        [daily], tags=_range("2024-01-02", "2024-01-05"), resources=_resources(), instance=instance
    )
    result = materialize(
        [daily.to_source_asset(), everything], resources=_resources(), instance=instance
    )
    assert result.success
    assert query(stocks_url, "SELECT count(*) FROM everything") == [(8,)]


def test_dynamic_partitions_are_key_slices(stocks_url):
    instance = DagsterInstance.ephemeral()
    materialize(
        [daily], tags=_range("2024-01-02", "2024-01-03"), resources=_resources(), instance=instance
    )
    instance.add_dynamic_partitions("test_runs", ["2024-01-03", "2024-01-03.r2"])
    for key in ("2024-01-03", "2024-01-03.r2", "2024-01-03"):
        assert materialize(
            [daily.to_source_asset(), per_run],
            partition_key=key,
            resources=_resources(),
            instance=instance,
        ).success
    assert query(stocks_url, "SELECT run_id, rows_seen FROM per_run ORDER BY run_id") == [
        ("2024-01-03", 4),
        ("2024-01-03.r2", 4),
    ]


def test_partitioned_asset_without_partition_column_is_a_clear_error(stocks_url):
    @asset(partitions_def=DailyPartitionsDefinition("2024-01-01"))
    def nameless(context: AssetExecutionContext) -> pd.DataFrame:
        return pd.DataFrame({"x": [1]})

    with pytest.raises(ValueError, match="names no 'partition_column'"):
        materialize(
            [nameless],
            partition_key="2024-01-02",
            resources=_resources(),
            instance=DagsterInstance.ephemeral(),
        )
