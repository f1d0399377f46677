"""(a) Single-run backfill of `sample` 1999–2018 next to Dagster's own floor.

Two floors, each doing nothing over the same partitions on the same Postgres-backed instance:
- an empty asset: one materialization per partition, what issue 2 measured against;
- an empty asset of raw_prices' shape: the same outputs (raw_prices and corporate_actions), the
  same asset checks in the step and after it, and one small metadata entry per partition: what
  Dagster itself records for this job, which our code cannot do with less. Dagster stores one
  row per check and partition, so four checks cost it more than the materializations do.
Target: our raw_prices backfill ≤ 1.3× the floor (both printed; the shape's floor is the one
that measures our code).

Each is measured under three event-log modes, side by side in one run: Dagster's default (each
event stored with its own connection), batched materialization events
(`DAGSTER_EVENT_BATCH_SIZE`, what the platform sets), and batched plus one planned event per
asset (what the commands' in-process ranged runs add).
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import bench_home, stop_own_server

os.environ["STOCK_ASSETS_SOURCE"] = "sample"
HOME = bench_home("backfill")

from dagster import (  # noqa: E402
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetOut,
    BackfillPolicy,
    DagsterInstance,
    Definitions,
    IOManager,
    Output,
    asset,
    asset_check,
    define_asset_job,
    multi_asset,
)
from dagster._core.storage.tags import (  # noqa: E402
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.definitions import build_definitions  # noqa: E402
from stock_assets.defs.partition_metadata import add_partition_metadata  # noqa: E402
from stock_assets.runtime.state import EVENT_LOG_ENV, prepare  # noqa: E402
from stock_assets.settings import load_settings  # noqa: E402

START, END = "1999-01-04", "2018-12-31"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class NoStorage(IOManager):
    def handle_output(self, context, obj):
        pass

    def load_input(self, context):
        return None


def main() -> None:
    settings = load_settings()
    prepare(settings)
    instance = DagsterInstance.get()
    defs = build_definitions(settings)
    ours = defs.resolve_job_def("ingest_prices")

    @asset(
        partitions_def=ours.partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        io_manager_key="nothing",
    )
    def floor(context: AssetExecutionContext) -> None:
        return None

    floor_job = Definitions(
        assets=[floor],
        jobs=[define_asset_job("floor", selection=[floor])],
        resources={"nothing": NoStorage()},
    ).resolve_job_def("floor")
    shape_job = shaped_floor(ours)
    tags = {ASSET_PARTITION_RANGE_START_TAG: START, ASSET_PARTITION_RANGE_END_TAG: END}
    n = len(ours.partitions_def.get_partition_keys())
    print(f"state {HOME}; {START} … {END}")

    in_run = sum(1 for k in ours.partitions_def.get_partition_keys() if START <= k <= END)
    print(f"partitions per run      {in_run} (of {n})")
    timings: dict[tuple[str, str], float] = {}
    for mode, env in MODES.items():
        for key in ENV_KEYS:
            os.environ.pop(key, None)
        os.environ.update(env)
        runs = (("floor (empty asset)", floor_job), (SHAPE, shape_job), ("raw_prices", ours))
        for name, job in runs:
            t0 = time.perf_counter()
            result = job.execute_in_process(instance=instance, tags=tags, run_config=QUIET)
            timings[mode, name] = time.perf_counter() - t0
            assert result.success, name
            print(f"{mode:<34}{name:<28}{timings[mode, name]:8.1f} s")
    print(
        "\nmode                              raw_prices  empty  shape   "
        "ratio to empty   ratio to shape (target ≤ 1.30×)"
    )
    for mode in MODES:
        ours_s = timings[mode, "raw_prices"]
        empty_s, shape_s = timings[mode, "floor (empty asset)"], timings[mode, SHAPE]
        print(
            f"{mode:<34}{ours_s:8.1f} s{empty_s:6.1f} s{shape_s:6.1f} s"
            f"{ours_s / empty_s:10.2f}×{ours_s / shape_s:16.2f}×"
        )
    default = timings["Dagster default", "raw_prices"]
    for mode in list(MODES)[1:]:
        print(f"raw_prices, {mode} vs default: {default / timings[mode, 'raw_prices']:.1f}× faster")


SHAPE = "floor (raw_prices' shape)"


def shaped_floor(ours):
    """An empty multi-asset with raw_prices' outputs, checks and per-partition metadata."""
    defs = ours.asset_layer.asset_graph.assets_defs
    (step,) = [a for a in defs if a.keys]
    names = {key: "floor_" + key.to_python_identifier() for key in step.keys}
    in_step = [
        AssetCheckSpec(spec.name, asset=names[spec.asset_key], blocking=spec.blocking)
        for spec in step.check_specs
    ]

    @multi_asset(
        name="floor_shape",
        outs={name: AssetOut(io_manager_key="nothing") for name in names.values()},
        partitions_def=ours.partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        check_specs=in_step,
    )
    def floor_shape(context: AssetExecutionContext):
        note = {"rows": 2, "tickers": 2, "exchange_open": True}
        add_partition_metadata(
            context, dict.fromkeys(context.partition_keys, note), in_step[0].asset_key
        )
        for name in names.values():
            yield Output(None, output_name=name)
        for spec in in_step:
            yield AssetCheckResult(asset_key=spec.asset_key, check_name=spec.name, passed=True)

    after = [
        _empty_check(key.name, names[key.asset_key])
        for a in defs
        if not a.keys
        for key in a.check_keys
    ]
    return Definitions(
        assets=[floor_shape],
        asset_checks=after,
        jobs=[define_asset_job("floor_shape", selection=[floor_shape])],
        resources={"nothing": NoStorage()},
    ).resolve_job_def("floor_shape")


def _empty_check(name: str, asset_name: str):
    @asset_check(asset=asset_name, name=name)
    def empty() -> AssetCheckResult:
        return AssetCheckResult(passed=True)

    return empty


ENV_KEYS = ("DAGSTER_EVENT_BATCH_SIZE", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS")
MODES = {
    "Dagster default": {},
    "batched (platform default)": dict(EVENT_LOG_ENV),
    "batched + one planned per asset": {
        **EVENT_LOG_ENV,
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
    },
}


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_own_server()
