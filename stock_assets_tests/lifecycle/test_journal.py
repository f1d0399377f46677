"""The promotion journal, the retraining lease and pinned model files, against real MLflow,
real Postgres and real processes (killed at failpoints, racing in lock-step)."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import mlflow
import numpy as np
import pandas as pd
import psycopg2
import pytest
from dagster import DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.commands.replay import run_range
from stock_assets.definitions import build_definitions
from stock_assets.defs.resources import PostgresResource
from stock_assets.lifecycle.history import NothingToUndo
from stock_assets.lifecycle.journal import (
    StaleProduction,
    bootstrap,
    history,
    move,
    reconcile,
    rollback,
)
from stock_assets.lifecycle.registry import (
    UntrustedModel,
    load_version,
    log_forecaster,
    production,
    setup,
)
from stock_assets.ml.bundle import NAIVE, Bundle
from stock_assets.runtime.failpoints import VARIABLE as FAILPOINT
from stock_assets.settings import load_settings
from stock_assets_tests.markets import CUTOFF, SYN, TINY

EXAMPLE = SYN.fetch(["SYN000", "SYN001"], dt.date(2016, 1, 4), dt.date(2016, 1, 8))
PROC = "stock_assets_tests.lifecycle.journal_proc"


@pytest.fixture(scope="module")
def registry(pg_server):
    setup()
    return pg_server


def _name() -> str:
    return f"journal_{uuid.uuid4().hex[:8]}"


def _register(name: str, half_width: float) -> str:
    """A naive version whose interval half-width tells it apart from its siblings."""
    bundle = Bundle(kind=NAIVE, tickers=["SYN000", "SYN001"], half_width=half_width)
    with PostgresResource().connect() as conn, mlflow.start_run(run_name="journal-test"):
        return log_forecaster(conn, bundle, None, name, EXAMPLE, {"kind": NAIVE})


def _three(name: str) -> list[str]:
    """Versions 1, 2, 3 registered; 1 bootstrapped, then 1 → 2 → 3."""
    versions = [_register(name, h) for h in (0.01, 0.02, 0.03)]
    with PostgresResource().connect() as conn:
        bootstrap(conn, name, lambda: versions[0])
        move(conn, name, versions[1])
        move(conn, name, versions[2])
    return versions


def _rows(name: str) -> pd.DataFrame:
    with PostgresResource().connect() as conn:
        return history(conn, name)


def _linear(rows: pd.DataFrame) -> bool:
    done = rows[rows["status"] == "done"]
    pairs = zip(done["new_version"].iloc[:-1], done["previous_version"].iloc[1:], strict=True)
    return all(a == b for a, b in pairs)


def test_two_rollbacks_after_three_promotions_land_on_the_first(registry):
    name = _name()
    v1, v2, v3 = _three(name)
    with PostgresResource().connect() as conn:
        assert rollback(conn, name).new == v2
        second = rollback(conn, name)  # before: the newest move onto 2 was 2 → 3, so 3 again
        assert (second.previous, second.new) == (v2, v1)
        with pytest.raises(NothingToUndo, match=f"version {v1} replaced nothing"):
            rollback(conn, name)
        assert production(name).version == v1
        assert rollback(conn, name, to=v3).new == v3  # --to: any version that served
        rows = history(conn, name)
    assert rows["new_version"].iloc[-1] == production(name).version == v3
    assert rows["action"].tolist() == ["bootstrap", "promote", "promote"] + ["rollback"] * 3
    assert _linear(rows)


def test_promoting_the_current_version_writes_nothing_and_keeps_the_undo(registry):
    name = _name()
    _v1, v2, v3 = _three(name)
    with PostgresResource().connect() as conn:
        before = len(history(conn, name))
        moved = move(conn, name, v3)
        assert moved.noop and len(history(conn, name)) == before
        assert rollback(conn, name).new == v2  # before: the no-op row made rollback do nothing


def test_a_stale_compare_and_set_is_refused_naming_both_versions(registry):
    name = _name()
    v1, v2, v3 = _three(name)
    with PostgresResource().connect() as conn:
        with pytest.raises(StaleProduction, match=f"is version {v3}, not version {v2}"):
            move(conn, name, v1, expected=v2)
        assert production(name).version == v3


def _child(args: list[str], failpoint: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if failpoint:
        env[FAILPOINT] = failpoint
    return subprocess.run(
        [sys.executable, "-m", PROC, *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_kill_after_the_alias_moved_is_finished_by_the_next_command(registry):
    name = _name()
    v1, _v2, v3 = _three(name)
    killed = _child(["promote", name, v1], "promotion.after_alias=kill")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert production(name).version == v1  # the alias moved ...
    assert _rows(name)["status"].iloc[-1] == "pending"  # ... the journal did not say so
    env = {**os.environ, "STOCK_ASSETS_MODEL_NAME": name}
    cli = Path(sys.executable).parent / "stock-assets"
    shown = subprocess.run([cli, "promotions"], env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert f"finished: the alias had moved {v3} → {v1}" in shown.stderr  # the repair is logged
    rows = _rows(name)
    assert rows["status"].tolist() == ["done"] * 4 and rows["new_version"].iloc[-1] == v1
    assert "[reconcile: done]" in rows["reason"].iloc[-1] and _linear(rows)
    last = shown.stdout.splitlines()[-1].split()
    assert last[2:7] == [v3, v1, "promote", "cli", "done"], shown.stdout
    with PostgresResource().connect() as conn:
        assert rollback(conn, name).new == v3  # undo knows the repaired move


def test_kill_before_the_alias_moved_is_abandoned(registry):
    name = _name()
    v1, v2, v3 = _three(name)
    killed = _child(["promote", name, v1], "promotion.before_alias=kill")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert production(name).version == v3
    lines: list[str] = []
    with PostgresResource().connect() as conn:
        assert reconcile(conn, name, lines.append) == lines
    assert lines == [
        f"reconcile: promote #{_rows(name)['id'].iloc[-1]} of {name} abandoned: "
        f"the alias never moved to {v1}"
    ]
    rows = _rows(name)
    assert rows["status"].tolist() == ["done"] * 3 + ["abandoned"]
    with PostgresResource().connect() as conn:
        assert rollback(conn, name).new == v2


def test_alias_moved_outside_the_journal_is_recorded_by_reconcile(registry):
    name = _name()
    v1, _v2, v3 = _three(name)
    mlflow.MlflowClient().set_registered_model_alias(name, "production", v1)  # the MLflow UI
    with PostgresResource().connect() as conn:
        repairs = reconcile(conn, name, lambda _: None)
    assert repairs == [f"reconcile: {name} alias found on {v1}, journal said {v3}"]
    rows = _rows(name)
    assert rows[["new_version", "action", "actor"]].iloc[-1].tolist() == [v1, "repair", "reconcile"]


def test_fifty_simultaneous_promotions_keep_one_linear_chain(registry):
    name = _name()
    v1, v2, _v3 = _three(name)
    ctx = multiprocessing.get_context("spawn")
    rounds = 50
    barrier, results = ctx.Barrier(3, timeout=120), ctx.Queue()
    procs = [
        ctx.Process(target=_race, args=(name, target, rounds, barrier, results))
        for target in (v1, v2)
    ]
    for proc in procs:
        proc.start()
    try:
        for i in range(rounds):
            barrier.wait()  # both read production, then promote at the same instant
            barrier.wait()  # both done
            rows = _rows(name)
            assert rows["new_version"].iloc[-1] == production(name).version, f"round {i}"
            assert set(rows["status"]) == {"done"}
    finally:
        for proc in procs:
            proc.join(timeout=60)
    outcomes = [results.get(timeout=10) for _ in range(2 * rounds)]
    by_round: dict[int, list[str]] = {}
    for i, _, what, _ in outcomes:
        by_round.setdefault(i, []).append(what)
    for i, whats in by_round.items():
        # one compare-and-set wins; the other saw a stale production (or had nothing to do)
        assert whats.count("moved") <= 1 and whats.count("stale") <= 1, (i, whats)
        assert whats.count("moved") + whats.count("noop") >= 1, (i, whats)
    assert sum(w.count("stale") for w in by_round.values()) > 0
    rows = _rows(name)
    assert _linear(rows) and rows["new_version"].iloc[-1] == production(name).version


def test_runs_that_bootstrap_at_once_register_and_promote_one_naive_version(registry):
    name = _name()
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(3, timeout=120), ctx.Queue()
    procs = [
        ctx.Process(target=_bootstrap_at_once, args=(name, EXAMPLE, barrier, results))
        for _ in range(3)
    ]
    for proc in procs:
        proc.start()
    versions = [results.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert len(set(versions)) == 1
    assert len(mlflow.MlflowClient().search_model_versions(f"name = '{name}'")) == 1
    rows = _rows(name)
    assert rows[["action", "status"]].values.tolist() == [["bootstrap", "done"]]


def _bootstrap_at_once(*args) -> None:
    from stock_assets_tests.lifecycle.journal_proc import bootstrap_at_once

    bootstrap_at_once(*args)


def _race(*args) -> None:
    from stock_assets_tests.lifecycle.journal_proc import race

    race(*args)


def test_a_version_whose_stored_code_was_altered_is_refused_at_load(registry):
    name = _name()
    version = _register(name, 0.02)
    with PostgresResource().connect() as conn:
        _model, bundle = load_version(conn, name, version)  # intact: loads
        assert bundle.half_width == 0.02
    where = mlflow.MlflowClient().get_model_version_download_uri(name, version)
    target = Path(urlsplit(where).path) / "mlflow_model_code.py"  # the local artifact store
    assert target.is_file()
    target.write_text(target.read_text() + "\nimport os  # injected\n")
    with (
        PostgresResource().connect() as conn,
        pytest.raises(UntrustedModel, match=r"mlflow_model_code\.py does not match"),
    ):
        load_version(conn, name, version)
    tags = mlflow.MlflowClient().get_model_version(name, version).tags
    assert len(tags["code_sha256"]) == 64  # the registry shows the pinned digest too


def test_a_version_without_digests_loads_only_after_an_explicit_pin(registry):
    from stock_assets.lifecycle.registry import pin_existing

    name = _name()
    version = _register(name, 0.03)
    with PostgresResource().connect() as conn:
        with conn.cursor() as cur:  # as a version registered before digests existed
            cur.execute("DELETE FROM model_digests WHERE model_name = %s", (name,))
        conn.commit()
        with pytest.raises(UntrustedModel, match=f"pin --version {version}"):
            load_version(conn, name, version)
        pinned = pin_existing(conn, name, version)
        assert load_version(conn, name, version)[1].half_width == 0.03
        assert len(pinned.code) == 64
        with pytest.raises(Exception, match="pinned already"):
            pin_existing(conn, name, version)


# --- runs: pinned version per run, one retraining at a time ---------------------------------


@pytest.fixture(scope="module")
def market(registry):
    """raw_prices of the synthetic market, ingested once for the module."""
    settings = load_settings().with_market(start_date="2016-01-04")
    with psycopg2.connect(registry.for_db("stocks")) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS raw_prices, corporate_actions CASCADE")
    defs = build_definitions(settings, source=SYN, retraining=TINY)
    result = defs.resolve_job_def("ingest_prices").execute_in_process(
        instance=DagsterInstance.ephemeral(),
        tags={
            ASSET_PARTITION_RANGE_START_TAG: "2016-01-04",
            ASSET_PARTITION_RANGE_END_TAG: "2019-12-31",
        },
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    assert result.success
    return settings


def test_a_promotion_during_a_run_does_not_change_the_version_that_serves_it(
    market, monkeypatch, tmp_path
):
    name = _name()
    v1, v2 = _register(name, 0.01), _register(name, 0.05)
    with PostgresResource().connect() as conn:
        bootstrap(conn, name, lambda: v1)
    defs = build_definitions(market, source=SYN, retraining={**TINY, "model_name": name})
    monkeypatch.setenv(FAILPOINT, f"serving.after_resolve=pause:{tmp_path}")
    day = "2019-07-01"
    run = threading.Thread(target=_in_thread, args=(run_range, defs, "daily_operations", day, day))
    run.start()
    deadline = time.monotonic() + 120
    while not (tmp_path / "serving.after_resolve.reached").exists():
        assert time.monotonic() < deadline and run.is_alive(), "the run never reached serving"
        time.sleep(0.05)
    with PostgresResource().connect() as conn:
        move(conn, name, v2, expected=v1, reason="lands mid-run")
    (tmp_path / "serving.after_resolve.release").touch()
    run.join(timeout=300)
    with PostgresResource().connect() as conn:
        rows = _predictions(conn, day)
    assert len(rows) == 2 and set(rows["model_version"]) == {v1}
    # the interval is v1's (half-width 0.01), not v2's (0.05): stamp and model agree
    assert np.allclose(np.log(rows["upper"] / rows["predicted_close"]), 0.01)
    assert production(name).version == v2


def _in_thread(run, defs, *args, **kwargs):
    """Run on an instance born and disposed in this thread (its SQLite handles stay here)."""
    with DagsterInstance.ephemeral() as instance:
        return run(defs, instance, *args, **kwargs)


def _predictions(conn, day: str) -> pd.DataFrame:
    from stock_assets.storage.writer import query_frame

    return query_frame(
        conn,
        "SELECT model_version, predicted_close, upper FROM daily_predictions WHERE as_of_date = %s",
        (day,),
    )


def test_two_retrainings_at_once_one_runs_the_other_is_refused(market):
    name = _name()
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", PROC, "retrain", name, str(CUTOFF)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in outs)
    assert codes[0] == 0, outs
    refused = next(out for code, out, _ in outs if code != 0)
    assert "one retraining at a time" in refused, outs
    assert codes[1] in (3, 4), outs
    versions = mlflow.MlflowClient().search_model_versions(f"name = '{name}'")
    learned = [v for v in versions if v.tags.get("kind") != NAIVE]
    assert len(learned) == 1  # never two candidates from the race
    with PostgresResource().connect() as conn:
        from stock_assets.lifecycle.retraining_lease import holder

        assert holder(conn, name) is None  # released when the run ended


def test_a_promotion_after_the_check_is_not_overwritten_by_production_model(
    market, monkeypatch, tmp_path
):
    from stock_assets.commands.retrain import retrain

    name = _name()
    defs = build_definitions(
        market, source=SYN, retraining={**TINY, "model_name": name, "promotion_margin": -10.0}
    )
    monkeypatch.setenv(FAILPOINT, f"production_model.before_move=pause:{tmp_path}")
    outcome: list = []
    run = threading.Thread(
        target=lambda: outcome.append(
            _in_thread(retrain, defs, cutoff=CUTOFF, log_level="CRITICAL")
        )
    )
    run.start()
    deadline = time.monotonic() + 300
    while not (tmp_path / "production_model.before_move.reached").exists():
        assert time.monotonic() < deadline and run.is_alive(), "the run never reached the move"
        time.sleep(0.1)
    judged = production(name).version  # the naive bootstrap the check judged against
    operator = _register(name, 0.07)
    with PostgresResource().connect() as conn:
        move(conn, name, operator, expected=judged, reason="operator, while the run works")
    (tmp_path / "production_model.before_move.release").touch()
    run.join(timeout=300)
    (result,) = outcome
    assert result.check_passed is True and result.failed_steps == ["production_model"]
    assert f"is version {operator}, not version {judged} as expected" in result.failure
    assert result.production_version == operator  # the newer promotion stands
    assert _rows(name)["new_version"].tolist() == [judged, operator]
    runs = mlflow.search_runs(
        experiment_names=["stock_assets"],
        filter_string=f"tags.dagster_run_id = '{result.run_id}'",
    )
    assert runs["tags.failure"].tolist() == [result.failure]  # the MLflow run says why
