"""Replays over synthetic history, each in its own state folder (own Postgres, Dagster instance
and MLflow registry), with the live test state checked to be untouched."""

import datetime as dt
import os
from pathlib import Path

import pandas as pd
import psycopg2
import pytest

from stock_assets.commands.replay import ReplayError, format_summary, replay_into
from stock_assets.defs.resources import PostgresResource
from stock_assets.lifecycle.policy import Thresholds
from stock_assets.lifecycle.registry import configure, production
from stock_assets.runtime.postgres import embedded_stop
from stock_assets.storage.writer import query_frame
from stock_assets_tests.markets import TINY as SHARED_TINY

TINY = {
    **SHARED_TINY,
    "n_trials": 1,
    "max_epochs": 2,
    "patience": 1,
    "promotion_margin": 0.99,  # naive keeps serving: its interval stays calibrated on calm data
}
MARKET_ENV = {
    "STOCK_ASSETS_SOURCE": "synthetic",
    "STOCK_ASSETS_SYNTHETIC_TICKERS": "3",
    "STOCK_ASSETS_SYNTHETIC_START": "2016-01-04",
    "STOCK_ASSETS_SYNTHETIC_END": "2019-08-30",
    "STOCK_ASSETS_SYNTHETIC_SEED": "11",
}
SPAN = (dt.date(2019, 5, 20), dt.date(2019, 6, 28))
REGIME_DAY = dt.date(2019, 6, 3)


@pytest.fixture
def isolated(pg_server, tmp_path, monkeypatch):
    """Run in a scratch 'live' folder; restore the environment and stop servers afterwards."""
    saved = dict(os.environ)
    for key, value in MARKET_ENV.items():
        monkeypatch.setenv(key, value)
    live = tmp_path / "live"
    monkeypatch.setenv("STOCK_ASSETS_HOME", str(live))
    yield live
    for pgdata in tmp_path.glob("*/pgdata"):  # every state folder a test made here
        embedded_stop(pgdata)
    os.environ.clear()
    os.environ.update(saved)


def _seed_first_model(monkeypatch, home: Path, regime: bool) -> None:
    """A replay state with a first learned model trained before the span (cutoff 2019-05-17)."""
    from dagster import DagsterInstance

    from stock_assets.commands.replay import run_range
    from stock_assets.commands.retrain import retrain
    from stock_assets.definitions import build_definitions
    from stock_assets.runtime.state import prepare
    from stock_assets.settings import load_settings

    monkeypatch.setenv("STOCK_ASSETS_HOME", str(home))
    if regime:
        monkeypatch.setenv("STOCK_ASSETS_SYNTHETIC_REGIME", f"{REGIME_DAY}:0.036")  # ×3
    settings = load_settings()
    prepare(settings)
    defs = build_definitions(settings, retraining=TINY)
    instance = DagsterInstance.get()
    run_range(defs, instance, "ingest_prices", "2016-01-04", "2019-05-17")
    outcome = retrain(
        defs, instance, cutoff=dt.date(2019, 5, 17), reason="seed", log_level="CRITICAL"
    )
    assert outcome.ok


def _replay(home: Path, **kwargs):
    lines: list[str] = []
    summary = replay_into(*SPAN, home=home, retraining=TINY, echo=lines.append, **kwargs)
    return summary, lines


def test_regime_change_triggers_a_recorded_retraining(isolated, monkeypatch, tmp_path):
    """×3 volatility: the adapted interval keeps covering (the coverage rule stays quiet), so
    the retraining comes from the MAPE rule, here at a ceiling the wild regime crosses."""
    home = tmp_path / "wild"
    _seed_first_model(monkeypatch, home, regime=True)
    summary, lines = _replay(home, thresholds=Thresholds(mape_ceiling=2.0))
    assert summary.sessions == 29
    assert len(summary.retrainings) >= 1
    first = summary.retrainings.iloc[0]
    assert REGIME_DAY <= first.session <= dt.date(2019, 6, 21)
    assert "MAPE" in first.reason
    assert any("retraining" in line for line in lines)
    assert summary.chart is not None and summary.chart.exists()
    assert (summary.chart.parent / "replay_intervals.png").exists()
    iv = summary.intervals
    assert iv["n"] > 50 and 0 < iv["coverage"] <= 1 and len(iv["tercile_coverage"]) == 3
    assert "80 % interval coverage" in format_summary(summary)
    base = iv["baselines"]  # naive's own interval on the same rows (3 years of history)
    assert base["naive_n"] == iv["n"] and 0.5 < base["naive_coverage"] <= 1
    assert "naive baseline's own interval" in format_summary(summary)
    with PostgresResource().connect() as conn:
        runs = query_frame(conn, "SELECT dataset_run_id, reason FROM dataset_runs")
    assert first.retraining in set(runs["dataset_run_id"])


def test_stationary_span_does_not_retrain(isolated, monkeypatch, tmp_path):
    home = tmp_path / "calm"
    _seed_first_model(monkeypatch, home, regime=False)
    summary, _ = _replay(home)
    assert summary.sessions == 29 and summary.retrainings.empty
    _assert_closed_days_materialized(["2019-05-27"])  # Memorial Day, inside the span


def _assert_closed_days_materialized(days: list[str]) -> None:
    """A closed weekday in a replay is materialized empty, as a backfill and the schedule do:
    in the UI it is done (exchange_open false), not missing."""
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    instance = DagsterInstance.get()
    for key in ("raw_prices", "daily_predictions", "performance_log", "prediction_exports"):
        done = instance.get_materialized_partitions(AssetKey(key))
        assert set(days) <= done, (key, sorted(set(days) - done))
    for day in days:
        raw = AssetRecordsFilter(asset_key=AssetKey("raw_prices"), asset_partitions=[day])
        (record,) = instance.fetch_materializations(raw, limit=1).records
        assert record.asset_materialization.metadata["exchange_open"].value is False


def test_default_replay_leaves_the_live_state_untouched(isolated, monkeypatch):
    live = isolated
    from stock_assets.runtime.state import prepare
    from stock_assets.settings import load_settings

    prepare(load_settings())  # a live state with tables of its own
    with PostgresResource().connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE live_marker (x int); INSERT INTO live_marker VALUES (1)")
        conn.commit()
    summary, lines = _replay(None, in_place=False)
    assert lines[0].startswith(f"replay state folder: {live.parent / 'replay-2019-05-20'}")
    # back on the live state: no replay tables, no registered model
    monkeypatch.setenv("STOCK_ASSETS_HOME", str(live))
    env = prepare(load_settings())
    configure(env["MLFLOW_TRACKING_URI"], load_settings().mlflow_artifacts)
    with PostgresResource().connect() as conn:
        tables = set(
            query_frame(conn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")[
                "tablename"
            ]
        )
    assert tables == {"live_marker"}
    assert production("stock_forecaster") is None
    assert summary.sessions == 29


def test_interrupted_replay_resumes_to_the_same_tables(isolated, monkeypatch, tmp_path):
    whole, parted = tmp_path / "whole", tmp_path / "parted"
    for home in (whole, parted):
        _seed_first_model(monkeypatch, home, regime=True)
    _replay(whole)

    def interrupt(line: str) -> None:
        if line.startswith("[8/29]"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replay_into(*SPAN, home=parted, retraining=TINY, echo=interrupt)
    _, lines = _replay(parted)
    assert any(line.startswith("resuming: 7 of 29") for line in lines)

    def tables(home: Path) -> dict[str, pd.DataFrame]:
        monkeypatch.setenv("STOCK_ASSETS_HOME", str(home))
        url = PostgresResource().url()
        with psycopg2.connect(url) as conn:
            return {
                "predictions": query_frame(
                    conn,
                    "SELECT as_of_date, ticker, predicted_close, "
                    "model_version FROM daily_predictions "
                    "ORDER BY 1, 2",
                ),
                "performance": query_frame(
                    conn, "SELECT trade_date, ticker, abs_error FROM performance_log ORDER BY 1, 2"
                ),
                "progress": query_frame(
                    conn, "SELECT session, retraining FROM replay_progress ORDER BY 1"
                ),
            }

    a, b = tables(whole), tables(parted)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def test_bad_replay_ranges_are_clear_errors(isolated, monkeypatch, tmp_path):
    with pytest.raises(ReplayError, match="before --start"):
        replay_into(dt.date(2019, 6, 1), dt.date(2019, 5, 1), home=tmp_path / "x")
    with pytest.raises(ReplayError, match="outside the source's data"):
        replay_into(
            dt.date(2019, 8, 1), dt.date(2019, 9, 30), home=tmp_path / "y", echo=lambda line: None
        )


def _register_worse_than_naive(conn, name: str, version: str) -> str:
    """The learned `version` with its output layer's bias raised by 5 % a day: a model that
    cannot follow the market any more (it was forced to stop), registered and promoted."""
    import torch

    from stock_assets.lifecycle.journal import move
    from stock_assets.lifecycle.registry import load_version, log_forecaster
    from stock_assets.storage.prices import prices_until

    model, bundle = load_version(conn, name, version)
    net = model.unwrap_python_model().net
    bias = [p for key, p in net.named_parameters() if key.endswith("bias")][-1]
    with torch.no_grad():
        bias += 0.05 / bundle.target_scale
    prices = prices_until(conn, bundle.tickers, dt.date(2019, 5, 17))
    example = prices.groupby("ticker").tail(bundle.history_needed() + 1)
    forced = log_forecaster(conn, bundle, net, name, example, {"kind": bundle.kind})
    move(conn, name, forced, actor="test", reason="forced worse than naive")
    return forced


def test_a_model_worse_than_naive_is_demoted_on_the_record_and_rollback_undoes_it(
    isolated, monkeypatch, tmp_path
):
    import subprocess

    import mlflow

    from stock_assets_tests.servers import BIN

    home = tmp_path / "demote"
    _seed_first_model(monkeypatch, home, regime=False)  # v1 learned, rejected; v2 naive serves
    with PostgresResource().connect() as conn:
        forced = _register_worse_than_naive(conn, "stock_forecaster", "1")
    window = 10
    summary, lines = _replay(home, thresholds=Thresholds(demotion_sessions=window))
    (demotion,) = summary.demotions.itertuples()
    assert (demotion.previous_version, demotion.new_version) == (forced, "2")  # v2: naive
    assert demotion.reason.startswith("demotion: v3 (") and "worse than naive" in demotion.reason
    (said,) = [line for line in lines if "demotion to naive" in line]
    position, day = int(said[1:].split("/")[0]), dt.date.fromisoformat(said.split()[1][:-1])
    assert position <= window + 2  # the forced model served from the first replayed session
    with PostgresResource().connect() as conn:
        served = query_frame(
            conn,
            "SELECT as_of_date, model_version FROM daily_predictions WHERE as_of_date > %s",
            (day,),
        )
        journal = query_frame(
            conn, "SELECT action, actor, new_version FROM model_promotions ORDER BY id"
        )
    assert len(served) and set(served["model_version"].astype(str)) == {"2"}  # naive's
    assert journal.iloc[-1].tolist() == ["demote", "policy", "2"]
    assert "demotions: 1" in format_summary(summary)
    assert "production out of sample: skill vs naive" in format_summary(summary)
    assert summary.record["naive_share"] > 0.5  # naive served most of the replay

    undone = subprocess.run(
        [str(BIN / "stock-assets"), "rollback", "--reason", "operator overrides the demotion"],
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert undone.returncode == 0, undone.stdout + undone.stderr
    version = mlflow.MlflowClient().get_model_version_by_alias("stock_forecaster", "production")
    assert str(version.version) == forced
