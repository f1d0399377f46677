"""(a) Single-run backfill of `sample` 1999–2018 next to Dagster's own floor.

The floor is an asset that does nothing over the same partitions on the same Postgres-backed
instance: what Dagster itself costs (one materialization event per partition). Target: our
raw_prices backfill ≤ 1.3× the floor.

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
from _common import bench_home

os.environ["STOCK_ASSETS_SOURCE"] = "sample"
HOME = bench_home("backfill")

from dagster import (  # noqa: E402
    AssetExecutionContext,
    BackfillPolicy,
    DagsterInstance,
    Definitions,
    IOManager,
    asset,
    define_asset_job,
)
from dagster._core.storage.tags import (  # noqa: E402
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.definitions import build_definitions  # noqa: E402
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
        for name, job in (("floor (empty asset)", floor_job), ("raw_prices", ours)):
            t0 = time.perf_counter()
            result = job.execute_in_process(instance=instance, tags=tags, run_config=QUIET)
            timings[mode, name] = time.perf_counter() - t0
            assert result.success, name
            print(f"{mode:<34}{name:<22}{timings[mode, name]:8.1f} s")
    print("\nmode                              raw_prices  floor   ratio (target ≤ 1.30×)")
    for mode in MODES:
        ours_s, floor_s = timings[mode, "raw_prices"], timings[mode, "floor (empty asset)"]
        print(f"{mode:<34}{ours_s:8.1f} s{floor_s:7.1f} s {ours_s / floor_s:6.2f}×")
    default = timings["Dagster default", "raw_prices"]
    for mode in list(MODES)[1:]:
        print(f"raw_prices, {mode} vs default: {default / timings[mode, 'raw_prices']:.1f}× faster")


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
    main()
