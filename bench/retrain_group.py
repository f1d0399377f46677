"""Retraining group on `sample` (2 tickers, 1999 → cutoff 2017-12-29) with the default budget.

Prints wall time and peak RSS of the group, trials completed and pruned, the candidate's test
metrics next to naive and always-up, and the training loop's throughput (windows per second)
next to a bare PyTorch loop over the same tensors and model (target ≥ 80 %).
"""

import datetime as dt
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import bench_home, stop_own_server

HOME = bench_home("retrain")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from dagster import DagsterInstance  # noqa: E402
from dagster._core.storage.tags import (  # noqa: E402
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.commands.retrain import retrain  # noqa: E402
from stock_assets.definitions import build_definitions  # noqa: E402
from stock_assets.defs.resources import PostgresResource  # noqa: E402
from stock_assets.ml.dataset import build_panel, scaled_frame  # noqa: E402
from stock_assets.ml.networks import Forecaster  # noqa: E402
from stock_assets.ml.training import TrainConfig, tensors, train  # noqa: E402
from stock_assets.runtime.state import prepare  # noqa: E402
from stock_assets.settings import load_settings  # noqa: E402
from stock_assets.storage.writer import query_frame  # noqa: E402

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read(table: str, key: str) -> pd.DataFrame:
    with PostgresResource().connect() as conn:
        return query_frame(conn, f"SELECT * FROM {table} WHERE dataset_run_id = %s", (key,))


def bare_loop(model, x, y, batch_size: int, lr: float, epochs: int, seed: int) -> float:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    return epochs * len(x) / (time.perf_counter() - start)


def main() -> None:
    import os

    os.environ["STOCK_ASSETS_SOURCE"] = "sample"
    settings = load_settings()
    prepare(settings)
    defs = build_definitions(settings)
    ingest = defs.resolve_job_def("ingest_prices").execute_in_process(
        instance=DagsterInstance.ephemeral(),
        tags={
            ASSET_PARTITION_RANGE_START_TAG: "1999-01-04",
            ASSET_PARTITION_RANGE_END_TAG: "2017-12-29",
        },
        run_config=QUIET,
    )
    assert ingest.success
    print(f"state {HOME}")
    rss_before = rss_mib()
    t0 = time.perf_counter()
    outcome = retrain(
        defs,
        DagsterInstance.get(),
        cutoff=dt.date(2017, 12, 29),
        reason="benchmark",
        log_level="WARNING",
    )
    wall = time.perf_counter() - t0
    key = outcome.dataset_run_id
    tuned = read("tuned_params", key).iloc[0]
    print(f"retraining group wall   {wall:8.1f} s   (target ≤ 300 s)")
    print(f"peak RSS                {rss_mib():8.0f} MiB (before the group: {rss_before:.0f})")
    print(f"trials completed/pruned {tuned.trials_completed} / {tuned.trials_pruned}")
    print(f"best params             {tuned.params}")
    print(f"check beats_production  {outcome.check_passed}: {outcome.check_reason}")
    print(f"production alias        v{outcome.production_version} ({outcome.production_kind})")
    metrics = read("candidate_model", key)["metrics"].iloc[0]
    cols = ["mae", "rmse", "mape", "directional_accuracy", "skill"]
    print("\ncandidate test metrics (test window of the dataset run)")
    print(pd.DataFrame(metrics).T[cols].to_string(float_format=lambda v: f"{v:.4f}"))
    extra = {
        k: metrics["model"][k]
        for k in ("dm_pvalue_vs_naive", "coverage", "interval_width_pct", "naive_equivalent", "n")
    }
    print(extra)

    # throughput: the project's loop vs a bare loop, same tensors, same model, same batches
    processed, scalers = read("processed_features", key), read("scalers", key)
    scaled, features, params = scaled_frame(processed, scalers)
    config = TrainConfig(**tuned.params, max_epochs=3, patience=99)
    panel = build_panel(scaled, features, sorted(params))
    ends_train = panel.ends("train", config.seq_len)
    ends_val = panel.ends("validation", config.seq_len)
    scale = float(scaled.loc[scaled.split == "train", "target"].std())
    t0 = time.perf_counter()
    result = train(panel, ends_train, ends_val, config, scale)
    ours = result.epochs_run * len(ends_train) / (time.perf_counter() - t0)
    x, y = tensors(panel, ends_train, config.seq_len, scale)
    torch.manual_seed(config.seed)
    model = Forecaster(
        len(features), len(params), config.hidden, config.layers, config.dropout, config.arch
    )
    bare = bare_loop(model, x, y, config.batch_size, config.lr, 3, config.seed)
    print(
        f"\ntraining throughput     project {ours:,.0f} windows/s (incl. validation), "
        f"bare loop {bare:,.0f} windows/s → {ours / bare:.0%} (target ≥ 80 %)"
    )
    assert np.isfinite(ours)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_own_server()
