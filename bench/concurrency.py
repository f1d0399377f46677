"""Work side by side: PyTorch's default thread pool against STOCK_ASSETS_TORCH_THREADS, and
whole platform runs overlapping.

1. One fixed training (the project's `train` on the `sample` panel, fixed hyperparameters and
   seed, a fixed number of epochs) in a fresh process: alone, then two at once, with PyTorch's
   default pool (one spinning thread per core) and per thread setting.
2. Whole runs at the default setting, in two state folders on the `sample` source (each its own
   embedded Postgres and MLflow): one retraining (the retraining job, a fixed small budget and
   seed) alone, then two at once; one daily cycle alone, then while the other folder retrains.

Targets (issue 16): two at once within 2.3× the solo time (2× is a fair share of the cores);
the daily cycle during a retraining within 2.5× its solo time.

Usage: python bench/concurrency.py            (the parent: runs every scenario)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

EPOCHS = 3
CUTOFF = "2017-12-29"


def worker(threads: int) -> None:
    """One training in this process; prints its wall time as JSON."""
    import datetime as dt

    import torch

    from stock_assets.market.sources.sample import SampleSource
    from stock_assets.ml.dataset import SplitConfig, apply_scalers, build_panel, fit_scalers
    from stock_assets.ml.features import FEATURES
    from stock_assets.ml.processed import processed_frame
    from stock_assets.ml.threads import limit_torch_threads
    from stock_assets.ml.training import TrainConfig, train

    if threads:
        limit_torch_threads(threads)
    source = SampleSource()
    prices = source.fetch(
        source.default_tickers, dt.date(1999, 1, 4), dt.date.fromisoformat(CUTOFF)
    )
    processed = processed_frame(prices, "bench", SplitConfig()).dropna()
    features = list(FEATURES)
    scalers = fit_scalers(processed[processed["split"] == "train"], features)
    scaled = apply_scalers(processed, scalers, features)
    panel = build_panel(scaled, features)
    config = TrainConfig(seq_len=40, hidden=64, layers=2, max_epochs=EPOCHS, patience=99)
    scale = float(scaled.loc[scaled["split"] == "train", "target"].std())
    t0 = time.perf_counter()
    result = train(
        panel,
        panel.ends("train", config.seq_len),
        panel.ends("validation", config.seq_len),
        config,
        scale,
    )
    wall = time.perf_counter() - t0
    print(
        json.dumps({"threads": torch.get_num_threads(), "wall": wall, "epochs": result.epochs_run})
    )


def _run(threads: int, copies: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(threads)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(copies)
    ]
    walls = []
    for p in procs:
        out, _ = p.communicate()
        assert p.returncode == 0, out
        walls.append(json.loads(out.strip().splitlines()[-1])["wall"])
    return walls


HERE = Path(__file__).resolve().parent
SCENARIO = "2 tickers (sample)"
# a retraining that trains for real (three trials of a few epochs), small enough to repeat
OVERLAP_MODEL = {"n_trials": 3, "max_epochs": 4, "hidden_sizes": [32], "seq_lens": [8]}


def _step(kind: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / "daily_cycle.py"), kind, SCENARIO],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _seconds(proc: subprocess.Popen) -> float:
    out, err = proc.communicate()
    line = [x for x in out.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        raise RuntimeError(err[-3000:])
    return json.loads(line[0][7:])["seconds"]


def overlap() -> None:
    """Part 2: whole runs in two state folders."""
    import tempfile

    sys.path.insert(0, str(HERE))
    from daily_cycle import _env

    envs = []
    for label in ("a", "b"):
        home = Path(tempfile.mkdtemp(prefix=f"stock-assets-overlap-{label}-"))
        env = _env(SCENARIO, home)
        env["BENCH_RETRAINING"] = json.dumps(OVERLAP_MODEL)
        envs.append(env)
    try:
        for env in envs:  # prices and a first model in each folder (not measured)
            _seconds(_step("ingest", env))
            _seconds(_step("retrain", env))
        alone = _seconds(_step("retrain", envs[0]))
        both = [_step("retrain", env) for env in envs]
        together = max(_seconds(p) for p in both)
        cycle_alone = _seconds(_step("cycle", envs[0]))
        # a longer retraining (12 trials), so it trains for the whole cycle, start-up included
        longer = {**envs[1], "BENCH_RETRAINING": json.dumps({**OVERLAP_MODEL, "n_trials": 12})}
        busy = _step("retrain", longer)
        time.sleep(3)
        started = time.perf_counter()
        cycle_busy = _seconds(_step("cycle", envs[0]))
        cycle_wall = time.perf_counter() - started
        _seconds(busy)
        if time.perf_counter() - started < cycle_wall + 1:  # it had already finished
            print("warning: the retraining ended before the cycle did; the overlap is partial")
    finally:
        for env in envs:
            stop = [str(Path(sys.executable).parent / "stock-assets"), "db", "stop"]
            subprocess.run(stop, env=env, capture_output=True)
    print(f"\nwhole runs ({SCENARIO}, retraining budget {OVERLAP_MODEL}):")
    print(
        f"retraining   alone {alone:6.1f} s   two at once {together:6.1f} s   "
        f"{together / alone:5.2f}×  (target ≤ 2.3×)"
    )
    print(
        f"daily cycle  alone {cycle_alone:6.1f} s   during a retraining {cycle_busy:6.1f} s   "
        f"{cycle_busy / cycle_alone:5.2f}×  (target ≤ 2.5×)"
    )


def main() -> None:
    if os.environ.get("BENCH_PARTS") == "overlap":  # only part 2
        overlap()
        return
    cores = os.cpu_count()
    print(f"{cores} cores; one training = {EPOCHS} epochs, LSTM 2×64, seq 40, sample panel")
    rows = []
    for label, threads in (("PyTorch default pool", 0), ("1 thread", 1), ("2 threads", 2)):
        alone = _run(threads, 1)[0]
        together = _run(threads, 2)
        rows.append((label, alone, together))
        print(f"{label:<22} alone {alone:7.1f} s   two at once {max(together):7.1f} s")
    print("\nsetting                alone    two at once  ratio (target ≤ 2.3×; 2× is fair)")
    for label, alone, together in rows:
        print(f"{label:<22}{alone:6.1f} s  {max(together):8.1f} s  {max(together) / alone:6.2f}×")
    best = min(rows, key=lambda r: r[1])
    print(f"fastest alone: {best[0]} ({best[1]:.1f} s)")
    overlap()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]))
    else:
        main()
