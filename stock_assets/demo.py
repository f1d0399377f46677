"""The main job on the embedded default: ingest the bundled real sample history in one run,
then train and judge a candidate model with cutoff 2017-12-29."""

from __future__ import annotations

import os
import time

import click
from dagster import DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.definitions import build_definitions
from stock_assets.resources import PostgresResource
from stock_assets.runtime.state import prepare
from stock_assets.settings import load_settings

DEMO_CUTOFF = "2017-12-29"


def run_demo(end: str = "2018-12-31") -> None:
    if os.environ.get("STOCK_ASSETS_SOURCE", "sample") != "sample":
        click.echo("note: the demo uses the offline `sample` source")
    os.environ["STOCK_ASSETS_SOURCE"] = "sample"
    settings = load_settings()
    t0 = time.monotonic()
    env = prepare(settings)
    click.echo(f"state folder {settings.home}; Postgres ready in {time.monotonic() - t0:.1f}s")

    defs = build_definitions(settings)
    job = defs.resolve_job_def("ingest_prices")
    keys = job.partitions_def.get_partition_keys()
    start = keys[0]
    if end not in keys:
        raise click.BadParameter(f"{end} is not a trading_days partition key", param_hint="--end")
    click.echo(f"backfilling raw_prices {start} … {end} in one run …")
    t1 = time.monotonic()
    result = job.execute_in_process(
        instance=DagsterInstance.get(),
        tags={ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end},
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    elapsed = time.monotonic() - t1
    status = "succeeded" if result.success else "FAILED"
    click.echo(f"run {result.run_id} {status} in {elapsed:.1f}s")

    with PostgresResource().connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT ticker, count(*), min(trade_date), max(trade_date) "
            "FROM raw_prices GROUP BY ticker ORDER BY ticker"
        )
        rows = cur.fetchall()
    click.echo("\nraw_prices")
    click.echo(f"  {'ticker':<8}{'rows':>7}  span")
    for ticker, count, first, last in rows:
        click.echo(f"  {ticker:<8}{count:>7}  {first} … {last}")
    click.echo("\nchecks")
    for evaluation in result.get_asset_check_evaluations():
        verdict = "passed" if evaluation.passed else f"failed ({evaluation.severity.value})"
        click.echo(f"  {evaluation.check_name:<20}{verdict}")
    if not result.success:
        raise SystemExit(1)
    if end >= DEMO_CUTOFF:
        _retrain_and_report()
    click.echo(
        "\nBrowse it in the Dagster UI:\n"
        '  eval "$(.venv/bin/stock-assets env)" && .venv/bin/dagster dev\n'
        "  (then open http://127.0.0.1:3000)\n"
        f'  psql "{env["STOCK_ASSETS_DB_URL"]}"\n'
        f'  mlflow ui --backend-store-uri "{env["MLFLOW_TRACKING_URI"]}"'
    )


def _retrain_and_report() -> None:
    """Train a candidate with cutoff 2017-12-29 and show how it fares against naive."""
    import datetime as dt

    import pandas as pd

    from stock_assets.retrain import retrain
    from stock_assets.storage.tables import query_frame

    settings = load_settings()
    click.echo(f"\nretraining with cutoff {DEMO_CUTOFF} (Optuna + PyTorch, MLflow) …")
    t0 = time.monotonic()
    outcome = retrain(
        build_definitions(settings),
        DagsterInstance.get(),
        cutoff=dt.date.fromisoformat(DEMO_CUTOFF),
        reason="demo",
        log_level="CRITICAL",  # a failed promotion check is an outcome, not a stack trace
    )
    click.echo(
        f"dataset run {outcome.dataset_run_id} in {time.monotonic() - t0:.1f}s; "
        f"candidate version {outcome.candidate_version}"
    )
    with PostgresResource().connect() as conn:
        frame = query_frame(
            conn,
            "SELECT metrics, test_start, test_end FROM candidate_model WHERE dataset_run_id = %s",
            (outcome.dataset_run_id,),
        )
    if len(frame):
        row = frame.iloc[0]
        table = pd.DataFrame(row.metrics).T[
            ["mae", "rmse", "mape", "directional_accuracy", "skill"]
        ]
        click.echo(f"test window {row.test_start} … {row.test_end}")
        click.echo(table.to_string(float_format=lambda v: f"{v:.4f}"))
    verdict = {True: "passed", False: "failed", None: "did not run"}[outcome.check_passed]
    click.echo(f"beats_production {verdict}: {outcome.check_reason}")
    click.echo(
        f"production alias -> version {outcome.production_version} ({outcome.production_kind})"
    )
    if not outcome.ok:
        click.echo(f"retraining failed in {', '.join(outcome.failed_steps)}: see the Dagster UI")
        raise SystemExit(1)
