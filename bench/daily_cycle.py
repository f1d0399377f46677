"""Daily operations cost: one cycle (raw_prices + daily_predictions + performance_log + JSON
files for one session) and a 252-session prediction backfill, for 2 real tickers and for 500
synthetic ones with a small model trained on those 500.

Each measurement runs in a fresh process after the set-up (ingest + a small retraining), so its
peak RSS is the cycle's own; wall time is measured inside, excluding interpreter start.
Targets: a 500-ticker cycle ≤ 20 s; 252 sessions × 500 tickers of predictions ≤ 60 s.
"""

import dataclasses
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIOS = {
    # name: (source, tickers, first, cutoff, day, backfill_first)
    "2 tickers (sample)": ("sample", 2, "1999-01-04", "2017-12-29", "2018-12-31", "2018-01-02"),
    "500 tickers (synthetic)": (
        "synthetic",
        500,
        "2016-01-04",
        "2018-12-31",
        "2019-12-31",
        "2019-01-02",
    ),
}
SMALL_MODEL = dict(
    n_trials=1,
    max_epochs=1,
    patience=1,
    gap=8,
    seq_lens=[5],
    hidden_sizes=[8],
    layer_counts=[1],
    batch_sizes=[64],
    architectures=["lstm"],
    min_common_window=5,
)
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def _env(name: str, home: Path) -> dict:
    source, tickers, first, *_ = SCENARIOS[name]
    env = dict(
        os.environ,
        STOCK_ASSETS_HOME=str(home),
        STOCK_ASSETS_SOURCE=source,
        STOCK_ASSETS_INGEST_RETRIES="0",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )
    env.pop("STOCK_ASSETS_POSTGRES_URL", None)
    if source == "synthetic":
        env.update(
            STOCK_ASSETS_SYNTHETIC_TICKERS=str(tickers),
            STOCK_ASSETS_SYNTHETIC_START=first,
            STOCK_ASSETS_SYNTHETIC_END="2019-12-31",
        )
    return env


def _defs():
    from stock_assets.definitions import build_definitions
    from stock_assets.runtime.state import prepare
    from stock_assets.settings import load_settings

    settings = load_settings()
    prepare(settings)
    return build_definitions(dataclasses.replace(settings), retraining=SMALL_MODEL)


def _range(job, first: str, last: str):
    from dagster import DagsterInstance
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    result = job.execute_in_process(
        instance=DagsterInstance.get(),
        run_config=QUIET,
        raise_on_error=False,
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
    )
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]


def step(kind: str, name: str) -> dict:
    """Runs inside the measuring process."""
    _, _, first, cutoff, day, backfill_first = SCENARIOS[name]
    defs = _defs()
    start = time.perf_counter()
    if kind == "setup":
        from dagster import DagsterInstance

        from stock_assets.commands.retrain import retrain

        previous = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
        _range(defs.resolve_job_def("ingest_prices"), first, previous)
        outcome = retrain(
            defs,
            DagsterInstance.get(),
            cutoff=dt.date.fromisoformat(cutoff),
            reason="benchmark",
            log_level="ERROR",
        )
        # serve the small learned model whatever the check said
        from stock_assets.defs.resources import PostgresResource
        from stock_assets.lifecycle.journal import move

        with PostgresResource().connect() as conn:
            move(
                conn,
                defs.resources["registry"].model_name,
                outcome.candidate_version,
                reason="benchmark",
            )
    elif kind == "cycle":
        _range(defs.resolve_job_def("daily_operations"), day, day)
    elif kind == "backfill":
        from dagster import AssetKey, DagsterInstance
        from dagster._core.storage.tags import (
            ASSET_PARTITION_RANGE_END_TAG,
            ASSET_PARTITION_RANGE_START_TAG,
        )

        result = defs.resolve_job_def("daily_operations").execute_in_process(
            instance=DagsterInstance.get(),
            run_config=QUIET,
            asset_selection=[AssetKey("daily_predictions"), AssetKey("interval_state")],
            tags={
                ASSET_PARTITION_RANGE_START_TAG: backfill_first,
                ASSET_PARTITION_RANGE_END_TAG: day,
            },
        )
        assert result.success
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    if len(sys.argv) == 3:  # a measuring child process
        print("RESULT " + json.dumps(step(sys.argv[1], sys.argv[2])))
        return
    for name in SCENARIOS:
        home = Path(tempfile.mkdtemp(prefix="stock-assets-daily-"))
        env = _env(name, home)
        figures = {}
        for kind in ("setup", "cycle", "backfill"):
            out = subprocess.run(
                [sys.executable, __file__, kind, name], env=env, capture_output=True, text=True
            )
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if out.returncode or not line:
                print(f"{name} {kind} failed:\n{out.stderr[-3000:]}")
                break
            figures[kind] = json.loads(line[0][7:])
        stop = [str(Path(sys.executable).parent / "stock-assets"), "db", "stop"]
        subprocess.run(stop, env=env, capture_output=True)
        print(f"\n{name}  (state {home})")
        for kind, fig in figures.items():
            label = {
                "setup": "set-up: ingest + small retraining",
                "cycle": "one daily cycle (4 assets, 1 session)",
                "backfill": "daily_predictions backfill, 252 sessions, one run",
            }[kind]
            print(f"  {label:<52}{fig['seconds']:7.1f} s   peak RSS {fig['peak_rss_mib']:6.0f} MiB")


if __name__ == "__main__":
    main()
