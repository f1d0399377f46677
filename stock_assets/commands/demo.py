"""The main job on the embedded default and the offline `sample` source: backfill raw_prices,
train with cutoff 2017-12-29, then replay the last 60 sessions of 2018 in place — Q4 2018, a
real volatility regime change — and summarize. A second run reuses the state."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import click
import numpy as np
from dagster import DagsterInstance

from stock_assets.definitions import build_definitions
from stock_assets.defs.resources import PostgresResource
from stock_assets.lifecycle.policy import Thresholds
from stock_assets.market.calendars import previous_session, sessions_between
from stock_assets.ml.metrics import compare
from stock_assets.runtime.state import prepare
from stock_assets.settings import load_settings
from stock_assets.storage.prices import stored_span
from stock_assets.storage.writer import query_frame

DEMO_CUTOFF = dt.date(2017, 12, 29)
REPLAY_SESSIONS = 60
# Demo profile: ~20 s per retraining, and a cooldown that allows at most three in 60 sessions.
DEMO_RETRAINING = {"n_trials": 8}
DEMO_THRESHOLDS = Thresholds(cooldown_sessions=20)


def run_demo(end: str = "2018-12-31") -> None:
    from stock_assets.commands.replay import format_summary, run_range, run_replay
    from stock_assets.commands.retrain import retrain

    if os.environ.get("STOCK_ASSETS_SOURCE", "sample") != "sample":
        click.echo("note: the demo uses the offline `sample` source")
    os.environ["STOCK_ASSETS_SOURCE"] = "sample"
    settings = load_settings()
    phases: dict[str, float] = {}
    t0 = time.monotonic()
    env = prepare(settings)
    phases["start Postgres, MLflow store"] = time.monotonic() - t0
    click.echo(f"state folder {settings.home}")

    defs = build_definitions(settings, retraining=DEMO_RETRAINING, thresholds=DEMO_THRESHOLDS)
    instance = DagsterInstance.get()
    last = dt.date.fromisoformat(end)
    replay_days = sessions_between(dt.date(last.year, 1, 1), last)[-REPLAY_SESSIONS:]
    before = previous_session(replay_days[0])
    first = defs.resolve_job_def("ingest_prices").partitions_def.get_partition_keys()[0]

    t = time.monotonic()
    with PostgresResource().connect() as conn:
        span = stored_span(conn)
    if span is None or span[1] < before:
        click.echo(f"\n[1/3] backfilling raw_prices {first} … {before} in one run …")
        run_range(defs, instance, "ingest_prices", first, str(before))
    else:
        click.echo(f"\n[1/3] raw_prices already holds {span[0]} … {span[1]}")
    phases["backfill raw_prices"] = time.monotonic() - t

    t = time.monotonic()
    keys = instance.get_dynamic_partitions("dataset_runs")
    if str(DEMO_CUTOFF) in keys:
        click.echo(f"[2/3] dataset run {DEMO_CUTOFF} exists: not retraining")
    else:
        click.echo(f"[2/3] training with cutoff {DEMO_CUTOFF} (Optuna + PyTorch, MLflow) …")
        outcome = retrain(defs, instance, cutoff=DEMO_CUTOFF, reason="demo", log_level="CRITICAL")
        if outcome.check_passed is None:
            click.echo(f"      beats_production did not run: {outcome.failure}")
        else:
            verdict = "passed" if outcome.check_passed else "failed"
            click.echo(
                f"      candidate v{outcome.candidate_version}: beats_production {verdict}: "
                f"{outcome.check_reason}"
            )
        if not outcome.ok:
            raise SystemExit(f"retraining failed: {outcome.failure}")
    phases["train (cutoff 2017-12-29)"] = time.monotonic() - t

    t = time.monotonic()
    click.echo(f"[3/3] replaying {replay_days[0]} … {replay_days[-1]} in place …")
    summary = run_replay(
        defs,
        instance,
        replay_days[0],
        replay_days[-1],
        dt.date.fromisoformat(first),
        settings.home / "replay",
        echo=click.echo,
    )
    phases[f"replay {len(replay_days)} sessions"] = time.monotonic() - t

    click.echo("\n" + format_summary(summary))
    _report(replay_days, settings.home)
    click.echo("\nphase times")
    for name, seconds in phases.items():
        click.echo(f"  {name:<32}{seconds:7.1f} s")
    click.echo(f"  {'total':<32}{time.monotonic() - t0:7.1f} s")
    click.echo(
        "\nBrowse it:\n"
        "  .venv/bin/stock-assets dev   # Dagster UI :3000, MLflow UI :5000, API :8000\n"
        f'  psql "{env["STOCK_ASSETS_DB_URL"]}"\n'
        "  .venv/bin/stock-assets api   # dashboard on http://127.0.0.1:8000/, docs on /docs"
    )


def _report(days: list[dt.date], home) -> None:
    """Production vs naive vs always-up over the replayed sessions, and the latest predictions."""
    with PostgresResource().connect() as conn:
        rows = query_frame(
            conn,
            "SELECT last_close, predicted_close, actual_close FROM performance_log "
            "WHERE trade_date = ANY(%s) AND NOT in_sample",
            (days,),
        )
    if len(rows):
        last = rows["last_close"].to_numpy(float)
        table = compare(
            np.log(rows["predicted_close"].to_numpy(float) / last),
            np.log(rows["actual_close"].to_numpy(float) / last),
            last,
        )
        click.echo(f"\nout-of-sample over the replay ({len(rows)} predictions)")
        click.echo(f"  {'':<12}{'MAE':>10}{'MAPE %':>9}{'direction':>11}{'skill':>9}")
        for name, label in (
            ("model", "production"),
            ("naive", "naive"),
            ("always_up", "always-up"),
        ):
            m = table[name]
            click.echo(
                f"  {label:<12}{m['mae']:>10.3f}{m['mape']:>9.3f}"
                f"{m['directional_accuracy']:>11.3f}{m['skill']:>9.4f}"
            )
    latest = home / "predictions" / "latest_predictions.json"
    if latest.exists():
        doc = json.loads(latest.read_text())
        click.echo(
            f"\nlatest predictions (as of {doc['as_of_date']} for {doc['target_date']}, "
            f"model v{doc['model']['version']})"
        )
        for ticker, p in doc["predictions"].items():
            click.echo(
                f"  {ticker:<7} last {p['last_close']:>10.2f}  predicted "
                f"{p['predicted_close']:>10.2f}  [{p['lower']:.2f}, {p['upper']:.2f}]"
            )
