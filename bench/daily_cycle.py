"""Daily operations cost, and how far one machine goes: the price backfill, one small
retraining, one daily cycle (raw_prices + daily_predictions + performance_log + JSON files for
one session) and a 252-session prediction backfill, for 2 real tickers, 500 synthetic ones and
(`BENCH_SCENARIOS=scale`, or `make bench-scale`) 5,000 synthetic ones.

Each step runs in a fresh process, so its peak RSS is its own; wall time is measured inside,
excluding interpreter start, loading the definitions and opening the instance (a run worker
does both before its run starts). `BENCH_PROFILE=1` reruns the cycle and the backfill under py-spy
and names the platform functions that held the most samples (the bottleneck), and names for
every step the functions running when its peak RSS grew.
Targets (issue 16): 500 tickers — cycle ≤ 5 s with RSS ≤ 1 GiB, backfill ≤ 12.2 s;
5,000 tickers — cycle ≤ 60 s with RSS ≤ 4 GiB.
"""

import dataclasses
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from stock_assets.runtime.state import EVENT_LOG_ENV

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
    # three years: 2½ to train on (200 warm-up sessions, then four splits of ≥ 40 sessions;
    # calibration gets 10 %), the last one predicted
    "5000 tickers (synthetic)": (
        "synthetic",
        5000,
        "2017-01-03",
        "2019-06-28",
        "2019-12-31",
        "2019-01-02",
    ),
}
SETS = {
    "default": ["2 tickers (sample)", "500 tickers (synthetic)"],
    "scale": ["5000 tickers (synthetic)"],
}
TARGETS = {  # (step, scenario): (seconds, MiB)
    ("cycle", "500 tickers (synthetic)"): (5, 1024),
    ("backfill", "500 tickers (synthetic)"): (12.2, None),
    ("cycle", "5000 tickers (synthetic)"): (60, 4096),
}
LABELS = {
    "ingest": "raw_prices backfill, first day … day before",
    "retrain": "one small retraining",
    "cycle": "one daily cycle (4 assets, 1 session)",
    "backfill": "daily_predictions backfill, 252 sessions, one run",
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
# `make bench-tools` installs it into the virtualenv, which need not be on PATH
PY_SPY = shutil.which(
    "py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
)
# the same day run again rewrites the same partitions: a short step on a shared machine varies
# by ±10 %, so the cycle's figure is the median of a few runs (each in its own process)
CYCLE_RUNS = int(os.environ.get("BENCH_CYCLE_RUNS", "3"))
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
    env.update(EVENT_LOG_ENV)  # as the CLI runs: batched event writes
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
    budget = {**SMALL_MODEL, **json.loads(os.environ.get("BENCH_RETRAINING", "{}"))}
    return build_definitions(dataclasses.replace(settings), retraining=budget)


def _range(job, instance, first: str, last: str):
    """One single-run backfill, as `stock-assets demo`/`replay` launch them (one planned event
    per asset, batched event writes)."""
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from stock_assets.commands.replay import one_planned_event_per_asset

    with one_planned_event_per_asset():
        result = job.execute_in_process(
            instance=instance,
            run_config=QUIET,
            raise_on_error=False,
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        )
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _where(frame) -> str:
    """The deepest platform function on a stack (where our code holds the memory)."""
    name = "(outside stock_assets)"
    while frame is not None:
        path = frame.f_code.co_filename
        if "/stock_assets/" in path and "/stock_assets_tests/" not in path:
            return f"{frame.f_code.co_name} ({path.split('/stock_assets/', 1)[1]})"
        frame = frame.f_back
    return name


def _peak_growth(stop: threading.Event, growth: dict[str, float]) -> None:
    """Attribute each rise of the peak RSS to the platform function running then (sampled
    every 0.1 s): where the peak is made, not where memory is merely touched."""
    main = threading.main_thread().ident
    peak = _rss_mib()
    while not stop.wait(0.1):
        now = _rss_mib()
        if now > peak:
            name = _where(sys._current_frames().get(main))
            growth[name] = growth.get(name, 0.0) + now - peak
            peak = now


def step(kind: str, name: str) -> dict:
    """Runs inside the measuring process."""
    if os.environ.get("BENCH_PROFILE") == "1":
        stop, growth = threading.Event(), {}
        sampler = threading.Thread(target=_peak_growth, args=(stop, growth), daemon=True)
        sampler.start()
        out = _step(kind, name)
        stop.set()
        sampler.join()
        out["peak_growth"] = sorted(growth.items(), key=lambda kv: -kv[1])[:4]
        return out
    return _step(kind, name)


def _step(kind: str, name: str) -> dict:
    _, _, first, cutoff, day, backfill_first = SCENARIOS[name]
    from dagster import DagsterInstance

    defs = _defs()
    # a run worker has its instance before the run starts, as it has its definitions
    instance = DagsterInstance.get()
    start = time.perf_counter()
    if kind == "ingest":
        previous = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
        _range(defs.resolve_job_def("ingest_prices"), instance, first, previous)
    elif kind == "retrain":
        from stock_assets.commands.retrain import retrain

        outcome = retrain(
            defs,
            instance,
            cutoff=dt.date.fromisoformat(cutoff),
            reason="benchmark",
            log_level="ERROR",
        )
        if outcome.candidate_version is None:
            raise RuntimeError(f"the retraining registered no candidate: {outcome.failure}")
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
        _range(defs.resolve_job_def("daily_operations"), instance, day, day)
    elif kind == "backfill":
        from dagster import AssetKey

        job = defs.resolve_job_def("daily_operations").get_subset(
            asset_selection={AssetKey("daily_predictions"), AssetKey("interval_state")}
        )
        _range(job, instance, backfill_first, day)
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child(kind: str, name: str, env: dict, profile: Path | None = None) -> dict | str:
    cmd = [sys.executable, __file__, kind, name]
    if profile is not None:
        cmd = [PY_SPY, "record", "-f", "raw", "-r", "20", "-o", str(profile), "--", *cmd]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not line:
        return out.stderr[-3000:]
    return json.loads(line[0][7:])


def hot_functions(raw: Path, top: int = 4) -> list[tuple[str, float]]:
    """Share of samples per platform function, counted at the deepest stock_assets frame of
    each sample (where our code spends or hands off the time)."""
    counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        total += int(n)
        ours = [f for f in stack.split(";") if "(stock_assets/" in f or "/stock_assets/" in f]
        if ours:
            function, where = ours[-1].rsplit(" (", 1)
            name = f"{function} ({where.split('stock_assets/', 1)[-1].rsplit(':', 1)[0]})"
            counts[name] = counts.get(name, 0) + int(n)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return [(name, n / max(total, 1)) for name, n in ranked]


def _target(kind: str, name: str, fig: dict) -> str:
    seconds, mib = TARGETS.get((kind, name), (None, None))
    if seconds is None:
        return ""
    ok = fig["seconds"] <= seconds and (mib is None or fig["peak_rss_mib"] <= mib)
    rss = f", RSS ≤ {mib} MiB" if mib else ""
    return f"   target ≤ {seconds} s{rss}: {'met' if ok else 'MISSED'}"


def main() -> None:
    if len(sys.argv) == 3:  # a measuring child process
        print("RESULT " + json.dumps(step(sys.argv[1], sys.argv[2])))
        return
    names = SETS[os.environ.get("BENCH_SCENARIOS", "default")]
    profile = os.environ.get("BENCH_PROFILE") == "1" and PY_SPY is not None
    for name in names:
        home = Path(tempfile.mkdtemp(prefix="stock-assets-daily-"))
        env = _env(name, home)
        print(f"\n{name}  (state {home})", flush=True)
        for kind in ("ingest", "retrain", "cycle", "backfill"):
            runs = [_child(kind, name, env) for _ in range(CYCLE_RUNS if kind == "cycle" else 1)]
            failed = [r for r in runs if isinstance(r, str)]
            if failed:
                print(f"  {kind} failed:\n{failed[0]}")
                break
            fig = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]  # the median run
            spread = ""
            if len(runs) > 1:
                times = sorted(r["seconds"] for r in runs)
                spread = f"   (median of {len(runs)}: {', '.join(f'{t:.1f}' for t in times)} s)"
            print(
                f"  {LABELS[kind]:<52}{fig['seconds']:7.1f} s   peak RSS "
                f"{fig['peak_rss_mib']:6.0f} MiB{_target(kind, name, fig)}{spread}",
                flush=True,
            )
            if fig.get("peak_growth"):
                grew = ", ".join(f"{f} +{mib:.0f} MiB" for f, mib in fig["peak_growth"])
                print(f"    peak RSS grew in: {grew}", flush=True)
            if profile and kind in ("cycle", "backfill"):
                raw = home / f"{kind}.pyspy"
                if not isinstance(_child(kind, name, env, raw), str) and raw.exists():
                    hot = ", ".join(f"{f} {share:.0%}" for f, share in hot_functions(raw))
                    print(f"    profile (py-spy, share of samples): {hot}", flush=True)
        stop = [str(Path(sys.executable).parent / "stock-assets"), "db", "stop"]
        subprocess.run(stop, env=env, capture_output=True)


if __name__ == "__main__":
    main()
