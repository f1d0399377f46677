"""A single-run backfill of the whole bundled sample history (1999–2018) through raw_prices."""

from __future__ import annotations

from dagster import AssetKey, DagsterInstance, PartitionKeyRange
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.definitions import build_definitions
from stock_assets_tests.conftest import query


def test_whole_sample_history_in_one_run(stocks_url):
    job = build_definitions().resolve_job_def("ingest_prices")
    instance = DagsterInstance.ephemeral()
    result = job.execute_in_process(
        instance=instance,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: "1999-01-04",
            ASSET_PARTITION_RANGE_END_TAG: "2018-12-31",
        },
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    assert result.success
    assert len(instance.get_runs()) == 1
    weekdays = job.partitions_def.get_partition_keys_in_range(
        PartitionKeyRange("1999-01-04", "2018-12-31")
    )
    assert len(weekdays) == 5216
    assert len(instance.get_materialized_partitions(AssetKey("raw_prices"))) == 5216
    assert query(stocks_url, "SELECT ticker, count(*) FROM raw_prices GROUP BY 1 ORDER BY 1") == [
        ("^GSPC", 5031),
        ("^IXIC", 5031),
    ]
    assert all(e.passed for e in result.get_asset_check_evaluations())
