"""Replay the production loop over history, session by session, through the real machinery.

For each session: the daily operations run (raw_prices → daily_predictions → performance_log →
JSON files), the retraining sensor is evaluated on the instance, and any retraining it asks for
runs with cutoff = that session — all as real Dagster runs in the replay's own instance. By
default the replay lives in its own state folder (own Postgres, Dagster instance and MLflow
registry) beside the live one, so the live alias and tables are never touched.

Progress is stored per session (`replay_progress` in the replay's `stocks` database) with the
sensor's cursor, so an interrupted replay resumes where it stopped; every step replaces its
partitions, so a restart writes no duplicates either.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import DagsterInstance, Definitions, SensorResult, build_sensor_context
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.commands.retrain import execute_retraining
from stock_assets.defs.demotion import DEMOTE_JOB
from stock_assets.defs.resources import PostgresResource
from stock_assets.defs.tags import CHECK_STEP, REASON_TAG
from stock_assets.lifecycle.demotion import served_record
from stock_assets.lifecycle.scoring import baseline_summary, interval_score_pct
from stock_assets.market.calendars import previous_session, sessions_between
from stock_assets.ml.conformal import coverage_band
from stock_assets.ml.metrics import regime_coverage
from stock_assets.storage.prices import stored_span
from stock_assets.storage.schema import REPLAY_PROGRESS_DDL
from stock_assets.storage.writer import query_frame

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class ReplayError(ValueError):
    """A replay that cannot run as asked: the message says why."""


@dataclass
class ReplaySummary:
    sessions: int
    retrainings: pd.DataFrame  # session, dataset_run_id, reason, check, production
    promotions: pd.DataFrame
    performance: pd.DataFrame  # session, rolling skill, MAPE, coverage
    chart: Path | None = None
    intervals: dict = field(default_factory=dict)  # ml.metrics.regime_coverage + score
    interval_chart: Path | None = None
    resumed_from: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    demotions: pd.DataFrame = field(default_factory=pd.DataFrame)
    record: dict = field(default_factory=dict)  # lifecycle.demotion.served_record


def default_home(live_home: Path, start: dt.date, end: dt.date) -> Path:
    return live_home.parent / f"replay-{start}-{end}"


@contextmanager
def one_planned_event_per_asset() -> Iterator[None]:
    """Dagster's switch to plan a ranged run with one event per asset instead of one per
    partition (20 s -> 5 s for 500 partitions of ingest_prices). Its cost: when such a run
    fails, its partitions show as missing rather than failed in the UI (the run itself is
    failed and alerted). Only the in-process ranged runs of the commands use it; backfills
    launched from the UI keep per-partition failure marks."""
    key = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
    before = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def run_range(defs: Definitions, instance: DagsterInstance, job: str, first: str, last: str):
    with one_planned_event_per_asset():
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance,
            run_config=QUIET,
            raise_on_error=False,
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        )
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        errors = [
            e.event_specific_data.error.message.strip()
            for e in result.all_events
            if e.is_step_failure and e.event_specific_data and e.event_specific_data.error
        ]
        raise ReplayError(f"{job} {first}…{last} failed in {failed}: {' | '.join(errors)[:600]}")
    return result


def _progress(conn) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(REPLAY_PROGRESS_DDL)
    conn.commit()
    return query_frame(conn, "SELECT * FROM replay_progress ORDER BY session")


def first_partition(day: dt.date, start: dt.date, exchange: str) -> dt.date:
    """Where the session `day`'s run starts: the first weekday (partition) from `start` on after
    the previous session, so the closed weekdays just before `day` are materialized, empty, in
    its run, as a backfill and the schedule do: a holiday shows as done in the UI, not missing."""
    previous = previous_session(day, exchange)
    first = max(start, previous + dt.timedelta(days=1)) if previous else start
    while first < day and first.weekday() >= 5:
        first += dt.timedelta(days=1)
    return first


def run_replay(
    defs: Definitions,
    instance: DagsterInstance,
    start: dt.date,
    end: dt.date,
    history_start: dt.date,
    out_dir: Path,
    exchange: str = "XNYS",
    echo: Callable[[str], None] = print,
) -> ReplaySummary:
    """Replay [start, end] on the state `defs` and `instance` point at (already prepared)."""
    t0 = time.monotonic()
    sessions = sessions_between(start, end, exchange)
    if not sessions:
        raise ReplayError(f"no {exchange} session between {start} and {end}")
    source = defs.resources["price_source"].source()
    tickers = defs.resources["market"].ticker_list()
    try:
        source.check(tickers, history_start, sessions[-1])
    except ValueError as exc:
        raise ReplayError(f"replay range outside the source's data: {exc}") from exc
    db = PostgresResource()
    with db.connect() as conn:
        done = _progress(conn)
        span = stored_span(conn)
    completed = {d for d in done["session"]} if len(done) else set()
    before = previous_session(sessions[0], exchange)
    if before is None or before < history_start:
        raise ReplayError(f"no history before {sessions[0]} (history starts {history_start})")
    if span is None or span[0] > history_start or span[1] < before:
        echo(f"backfilling raw_prices {history_start} … {before} in one run")
        run_range(defs, instance, "ingest_prices", str(history_start), str(before))
    cursor = done["sensor_cursor"].iloc[-1] if len(done) else None
    sensor = defs.resolve_sensor_def("retraining_sensor")
    resources = {k: defs.resources[k] for k in ("stocks_db", "registry", "market", "policy")}
    todo = [d for d in sessions if d not in completed]
    if completed:
        echo(f"resuming: {len(completed)} of {len(sessions)} sessions already replayed")
    for i, day in enumerate(todo, start=len(sessions) - len(todo) + 1):
        elapsed = time.monotonic() - t0
        echo(f"[{i}/{len(sessions)}] {day}: daily operations   ({elapsed:5.0f}s)")
        first = first_partition(day, start, exchange)
        run_range(defs, instance, "daily_operations", str(first), str(day))
        context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        result = sensor(context)
        retraining, reason = None, None
        if isinstance(result, SensorResult):
            cursor = result.cursor
            for request in result.run_requests or []:
                if request.job_name == DEMOTE_JOB:
                    said = request.tags.get(REASON_TAG, "")
                    echo(f"[{i}/{len(sessions)}] {day}: demotion to naive — {said}")
                    demoted = defs.resolve_job_def(DEMOTE_JOB).execute_in_process(
                        instance=instance,
                        run_config={**QUIET, **request.run_config},
                        tags={REASON_TAG: f"replay: {said}"},
                        raise_on_error=False,
                    )
                    if not demoted.success:
                        raise ReplayError(f"demotion on {day} failed: {said}")
                    continue
                key, reason = request.partition_key, request.tags.get(REASON_TAG, "")
                echo(f"[{i}/{len(sessions)}] {day}: retraining {key} — {reason}")
                instance.add_dynamic_partitions("dataset_runs", [key])
                outcome = execute_retraining(
                    defs,
                    instance,
                    key,
                    run_config=QUIET,
                    tags={REASON_TAG: f"replay: {reason}"},
                )
                failed = [e.step_key for e in outcome.all_events if e.is_step_failure]
                if failed and failed != [CHECK_STEP]:
                    raise ReplayError(f"retraining {key} failed in {failed}")
                retraining = key
        with db.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO replay_progress (session, sensor_cursor, retraining, reason) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (session) DO UPDATE SET "
                "sensor_cursor = EXCLUDED.sensor_cursor, retraining = EXCLUDED.retraining, "
                "reason = EXCLUDED.reason, completed_at = now()",
                (day, cursor, retraining, reason),
            )
            conn.commit()
    summary = summarize(sessions, out_dir, defs.resources["retraining"].model_name)
    summary.resumed_from = len(completed)
    summary.seconds = time.monotonic() - t0
    return summary


def _kinds(model_name: str, versions) -> dict[str, str]:
    """Each version's kind tag (naive or an architecture), from the registry."""
    import mlflow

    client = mlflow.MlflowClient()
    return {
        str(v): client.get_model_version(model_name, str(v)).tags.get("kind", "")
        for v in sorted({str(v) for v in versions if v is not None})
    }


def summarize(sessions: list[dt.date], out_dir: Path, model_name: str) -> ReplaySummary:
    with PostgresResource().connect() as conn:
        progress = query_frame(
            conn,
            "SELECT session, retraining, reason FROM replay_progress "
            "WHERE session = ANY(%s) ORDER BY session",
            (sessions,),
        )
        with conn.cursor() as cur:
            cur.execute(
                "SELECT to_regclass('model_promotions') IS NOT NULL, "
                "to_regclass('performance_log') IS NOT NULL"
            )
            have_promotions, have_log = cur.fetchone()
        conn.rollback()
        promotions = (
            query_frame(
                conn,
                "SELECT promoted_at, previous_version, new_version, dataset_run_id, reason, "
                "action, metrics FROM model_promotions ORDER BY id",
            )
            if have_promotions
            else pd.DataFrame()
        )
        log = (
            query_frame(
                conn,
                "SELECT * FROM performance_log WHERE trade_date = ANY(%s)",
                (sessions,),
            )
            if have_log
            else pd.DataFrame()
        )
    retrainings = progress[progress["retraining"].notna()].reset_index(drop=True)
    performance = _daily_performance(log)
    chart = _chart(performance, retrainings, out_dir) if len(performance) else None
    intervals = _intervals(log)
    interval_chart = _interval_chart(log, out_dir) if intervals.get("n") else None
    summary = ReplaySummary(
        len(sessions), retrainings, promotions, performance, chart, intervals, interval_chart
    )
    if len(promotions):
        demoted = promotions[promotions["action"] == "demote"]
        summary.demotions = demoted.reset_index(drop=True)
    if len(log):
        summary.record = served_record(log, _kinds(model_name, log["model_version"].unique()))
    return summary


def _intervals(log: pd.DataFrame) -> dict:
    """Out-of-sample coverage overall, per volatility tercile and after the largest jump, and
    the mean interval score."""
    if log.empty:
        return {}
    oos = log[~log["in_sample"].astype(bool)]
    rows = pd.DataFrame(
        {
            "trade_date": oos["trade_date"],
            "ticker": oos["ticker"],
            "hit": oos["interval_hit"].astype(bool),
            "actual_return": np.log(oos["actual_close"].astype(float) / oos["last_close"]),
        }
    )
    out = regime_coverage(rows)
    if out.get("n"):
        out["interval_score_pct"] = float(np.nanmean(interval_score_pct(oos)))
        out["coverage_band"] = coverage_band(out["n"])
        out["baselines"] = baseline_summary(oos)
    return out


def _interval_chart(log: pd.DataFrame, out_dir: Path) -> Path:
    """The interval band over actual closes (first ticker) and coverage per month."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    oos = log[~log["in_sample"].astype(bool)].sort_values("trade_date")
    ticker = sorted(oos["ticker"].unique())[0]
    one = oos[oos["ticker"] == ticker]
    days = pd.to_datetime(one["trade_date"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), dpi=90)
    top.fill_between(days, one["lower"], one["upper"], alpha=0.3, label="80 % interval")
    top.plot(days, one["actual_close"], "k.", markersize=3, label="actual close")
    top.set_title(f"{ticker}: the interval made the session before, and the close")
    top.legend(loc="upper left")
    monthly = oos.groupby(pd.to_datetime(oos["trade_date"]).dt.to_period("M"))["interval_hit"]
    coverage = monthly.mean()
    bottom.bar(coverage.index.astype(str), coverage.to_numpy(), color="tab:blue")
    bottom.axhline(0.8, color="red", linestyle="--", label="target 0.80")
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("coverage per month")
    bottom.legend(loc="lower left")
    fig.autofmt_xdate()
    path = out_dir / "replay_intervals.png"
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _daily_performance(log: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """Rolling skill, MAPE and coverage per session over out-of-sample rows."""
    if log.empty:
        return pd.DataFrame(columns=["session", "skill", "mape", "coverage"])
    oos = log[~log["in_sample"].astype(bool)]
    daily = oos.groupby("trade_date").agg(
        mae=("abs_error", "sum"),
        naive=("naive_abs_error", "sum"),
        mape=("pct_error", "sum"),
        hits=("interval_hit", "sum"),
        n=("abs_error", "size"),
    )
    rolled = daily.rolling(window, min_periods=1).sum()
    return pd.DataFrame(
        {
            "session": rolled.index,
            "skill": 1 - rolled["mae"] / rolled["naive"],
            "mape": rolled["mape"] / rolled["n"],
            "coverage": rolled["hits"] / rolled["n"],
        }
    ).reset_index(drop=True)


def _chart(performance: pd.DataFrame, retrainings: pd.DataFrame, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(3, 1, figsize=(8, 6), dpi=90, sharex=True)
    days = pd.to_datetime(performance["session"])
    for ax, col, label in zip(
        axes,
        ("skill", "mape", "coverage"),
        ("skill vs naive", "MAPE %", "80 % coverage"),
        strict=True,
    ):
        ax.plot(days, performance[col], "-")
        ax.set_ylabel(label)
        for day in pd.to_datetime(retrainings["session"]):
            ax.axvline(day, color="red", alpha=0.4)
    axes[0].set_title("replay: rolling 20-session metrics (red: retraining)")
    fig.autofmt_xdate()
    path = out_dir / "replay_summary.png"
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def format_summary(summary: ReplaySummary) -> str:
    lines = [f"sessions replayed: {summary.sessions} (in {summary.seconds:.0f}s)"]
    lines.append(f"retrainings: {len(summary.retrainings)}")
    for row in summary.retrainings.itertuples():
        lines.append(f"  {row.session}  {row.retraining}  {row.reason}")
    lines.append(f"demotions: {len(summary.demotions)}")
    for row in summary.demotions.itertuples():
        lines.append(f"  v{row.previous_version} → v{row.new_version}  ({row.reason})")
    lines.append(f"promotions: {len(summary.promotions)}")
    for row in summary.promotions.itertuples():
        metrics = row.metrics if isinstance(row.metrics, dict) else json.loads(row.metrics or "{}")
        skill = metrics.get("model", {}).get("skill")
        shown = f", test skill {skill:.4f}" if isinstance(skill, float) else ""
        lines.append(f"  v{row.previous_version} → v{row.new_version}  ({row.reason}{shown})")
    if len(summary.performance):
        lines.append("rolling metrics (every 10th session):")
        shown = summary.performance.iloc[::10]
        lines.append(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    iv = summary.intervals
    if iv.get("n"):
        terciles = " / ".join(f"{c:.2f}" for c in iv["tercile_coverage"])
        lines.append(
            f"80 % interval coverage: {iv['coverage']:.3f} over {iv['n']} predictions (an exact "
            f"interval shows {iv['coverage_band'][0]:.2f}–{iv['coverage_band'][1]:.2f} 95 % of "
            f"the time); per volatility tercile (low/mid/high) {terciles}"
        )
        if "after_jump_coverage" in iv:
            lines.append(
                f"  first {iv['after_jump_sessions']} sessions from the largest volatility jump "
                f"({iv['jump']}, ×{iv['jump_ratio']:.1f}): {iv['after_jump_coverage']:.3f}; "
                f"mean interval score {iv['interval_score_pct']:.3f} %"
            )
        base = iv.get("baselines", {})
        if "naive_coverage" in base:
            lines.append(
                f"  naive baseline's own interval (no adaptation), same rows: coverage "
                f"{base['naive_coverage']:.3f} over {base['naive_n']}, interval score "
                f"{base['naive_interval_score_pct']:.3f} %"
            )
    rec = summary.record
    if rec:
        lines.append(
            f"production out of sample: skill vs naive {rec['skill']:+.4f} over "
            f"{rec['sessions']} sessions, one-sided DM p (worse than naive) "
            f"{rec['dm_p_worse']:.3f}; sessions served by naive {rec['naive_share']:.0%}, "
            f"by learned models {rec['learned_share']:.0%}"
        )
    charts = [str(c) for c in (summary.chart, summary.interval_chart) if c]
    if charts:
        lines.append(f"charts: {', '.join(charts)}")
    return "\n".join(lines)


def replay_into(
    start: dt.date,
    end: dt.date,
    home: Path | None = None,
    in_place: bool = False,
    retraining: dict | None = None,
    thresholds=None,
    echo: Callable[[str], None] = print,
) -> ReplaySummary:
    """Point this process at the replay's state folder (its own unless `in_place`), prepare it
    and replay. The live state is used only when `in_place`."""
    import os

    from stock_assets.definitions import build_definitions
    from stock_assets.runtime.state import prepare
    from stock_assets.settings import load_settings

    if end < start:
        raise ReplayError(f"--end {end} is before --start {start}")
    live = load_settings()
    target = live.home if in_place else (home or default_home(live.home, start, end))
    os.environ["STOCK_ASSETS_HOME"] = str(Path(target).expanduser().resolve())
    settings = load_settings()
    echo(f"replay state folder: {settings.home}{' (in place)' if in_place else ''}")
    prepare(settings)
    defs = build_definitions(settings, retraining=retraining, thresholds=thresholds)
    source = defs.resources["price_source"].source()
    history_start = dt.date.fromisoformat(settings.market.start_date or source.default_start)
    return run_replay(
        defs,
        DagsterInstance.get(),
        start,
        end,
        history_start,
        settings.home / "replay",
        settings.market.exchange,
        echo,
    )
