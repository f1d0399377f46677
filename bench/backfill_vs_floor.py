"""(a) Single-run backfill of `sample` 1999–2018 next to Dagster's own floor.

The floor is an asset that does nothing over the same partitions on the same Postgres-backed
instance: what Dagster itself costs (one materialization event per partition). Target: our
raw_prices backfill ≤ 1.3× the floor.
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
from stock_assets.runtime.state import prepare  # noqa: E402
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

    timings = {}
    for name, job in (
        ("floor (empty asset)", floor_job),
        ("raw_prices", ours),
        ("raw_prices again", ours),
    ):
        t0 = time.perf_counter()
        result = job.execute_in_process(instance=instance, tags=tags, run_config=QUIET)
        timings[name] = time.perf_counter() - t0
        assert result.success, name
        print(f"{name:<22}{timings[name]:8.1f} s")
    floor_s = timings["floor (empty asset)"]
    in_run = sum(1 for k in ours.partitions_def.get_partition_keys() if START <= k <= END)
    print(f"partitions per run      {in_run} (of {n})")
    for name in ("raw_prices", "raw_prices again"):
        print(f"{name} / floor   {timings[name] / floor_s:6.2f}×  (target ≤ 1.30×)")


if __name__ == "__main__":
    main()
