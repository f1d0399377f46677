"""Per-partition metadata added in one step lands exactly where the public call puts it."""

import pytest
from dagster import (
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    DagsterInstance,
    DagsterInvariantViolationError,
    DailyPartitionsDefinition,
    Output,
    asset,
    materialize,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.defs.partition_metadata import add_partition_metadata, fast_path_available

DAYS = DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-11")
RANGE = {ASSET_PARTITION_RANGE_START_TAG: "2024-01-02", ASSET_PARTITION_RANGE_END_TAG: "2024-01-09"}
paths: dict[str, bool] = {}


def _notes(context: AssetExecutionContext) -> dict[str, dict]:
    return {k: {"day": k, "n": i} for i, k in enumerate(context.partition_keys)}


@asset(partitions_def=DAYS, backfill_policy=BackfillPolicy.single_run())
def by_public_call(context: AssetExecutionContext) -> Output[None]:
    for key, note in _notes(context).items():
        context.add_asset_metadata(note, partition_key=key)
    return Output(None, metadata={"run_wide": 1})


@asset(partitions_def=DAYS, backfill_policy=BackfillPolicy.single_run())
def in_one_step(context: AssetExecutionContext) -> Output[None]:
    paths["fast"] = fast_path_available(context)
    notes = _notes(context)
    add_partition_metadata(context, {k: {"day": v["day"]} for k, v in notes.items()})
    add_partition_metadata(context, {k: {"n": v["n"]} for k, v in notes.items()})  # merges
    return Output(None, metadata={"run_wide": 1})


@asset(partitions_def=DAYS, backfill_policy=BackfillPolicy.single_run())
def outside_the_range(context: AssetExecutionContext) -> None:
    add_partition_metadata(context, {"2024-01-10": {"n": 1}})


def _metadata(instance: DagsterInstance, name: str) -> dict[str, dict]:
    records = instance.fetch_materializations(AssetKey(name), limit=100).records
    return {
        r.partition_key: {k: v.value for k, v in r.asset_materialization.metadata.items()}
        for r in records
    }


def test_one_step_metadata_equals_the_public_calls():
    instance = DagsterInstance.ephemeral()
    for a in (by_public_call, in_one_step):
        assert materialize([a], instance=instance, tags=RANGE).success
    public, ours = _metadata(instance, "by_public_call"), _metadata(instance, "in_one_step")
    assert paths["fast"], "Dagster moved the metadata accumulator: the one-step path is off"
    assert len(ours) == 8 and ours == public
    assert ours["2024-01-05"] == {"day": "2024-01-05", "n": 3, "run_wide": 1}


def test_a_partition_outside_the_run_is_named():
    with pytest.raises(DagsterInvariantViolationError, match=r"2024-01-10.*not being targeted"):
        materialize([outside_the_range], instance=DagsterInstance.ephemeral(), tags=RANGE)
