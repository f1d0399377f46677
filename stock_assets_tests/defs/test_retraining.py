"""The retraining group end to end: real Dagster, real MLflow registry, the embedded Postgres.

A small synthetic market and a tiny search profile keep each retraining to a few seconds. Each
test uses its own registered-model name, so the registry's history never leaks between tests.
"""

import datetime as dt
import uuid

import mlflow
import pandas as pd
import psycopg2
import pytest
from dagster import DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.commands.retrain import retrain
from stock_assets.definitions import build_definitions
from stock_assets.defs.resources import PostgresResource
from stock_assets.lifecycle.dataset_runs import cutoff_of
from stock_assets.lifecycle.journal import ensure_production, history, move, rollback
from stock_assets.lifecycle.registry import configure, production, tracking_uri
from stock_assets.settings import load_settings
from stock_assets.storage.prices import prices_until
from stock_assets.storage.writer import query_frame
from stock_assets_tests.markets import CUTOFF, SYN, TINY


@pytest.fixture(scope="module")
def market(pg_server):
    """raw_prices of the synthetic market, ingested once for the module."""
    settings = load_settings().with_market(start_date="2016-01-04")
    url = pg_server.for_db("stocks")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS raw_prices, corporate_actions CASCADE")
    defs = build_definitions(settings, source=SYN, retraining=TINY)
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def("ingest_prices").execute_in_process(
        instance=instance,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: "2016-01-04",
            ASSET_PARTITION_RANGE_END_TAG: "2019-12-31",
        },
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    assert result.success
    configure(tracking_uri(), settings.mlflow_artifacts)
    return settings, instance, url


def _defs(market, **overrides):
    settings, instance, _ = market
    name = f"test_forecaster_{uuid.uuid4().hex[:8]}"
    config = {**TINY, "model_name": name, **overrides}
    return build_definitions(settings, source=SYN, retraining=config), instance, name


def _run(defs, instance, cutoff=CUTOFF):
    return retrain(defs, instance, cutoff=cutoff, reason="test", log_level="WARNING")


def _table(url: str, sql: str, params=()) -> pd.DataFrame:
    with psycopg2.connect(url) as conn:
        return query_frame(conn, sql, params)


def test_bootstrap_gives_naive_the_alias(market):
    name = f"test_forecaster_{uuid.uuid4().hex[:8]}"
    assert production(name) is None
    with PostgresResource().connect() as conn:
        prices = prices_until(conn, ["SYN000", "SYN001"], CUTOFF)
        first = ensure_production(conn, name, prices)
        again = ensure_production(conn, name, prices)
        log = history(conn, name)
    assert first.kind == "naive" and again.version == first.version
    assert log["reason"].tolist() == ["bootstrap"] and log["previous_version"].isna().all()


def test_failing_check_keeps_alias_and_promotion_log(market):
    """A rejected candidate is an intended outcome, not a failure: the run succeeds (nothing
    red in the lineage graph), the check is a WARN on candidate_model, production_model is not
    materialized but observed with the decision, and the alias and its log stay."""
    from dagster import AssetKey, DagsterEventType

    defs, instance, name = _defs(market, promotion_margin=0.99)  # nobody beats MAE × 0.01
    outcome = _run(defs, instance)
    assert outcome.ok and outcome.success and not outcome.failed_steps
    assert outcome.check_passed is False and "≥" in outcome.check_reason
    assert outcome.production_kind == "naive"
    assert outcome.production_version != outcome.candidate_version
    with PostgresResource().connect() as conn:
        assert history(conn, name)["reason"].tolist() == ["bootstrap"]
    run = instance.get_run_by_id(outcome.run_id)
    assert run.is_success
    (evaluation,) = [
        e.dagster_event.event_specific_data
        for e in instance.all_logs(outcome.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    assert not evaluation.passed and evaluation.severity.value == "WARN"
    materialized = {
        e.dagster_event.asset_key.to_user_string()
        for e in instance.all_logs(outcome.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    }
    assert "candidate_model" in materialized and "production_model" not in materialized
    (observed,) = instance.all_logs(outcome.run_id, of_type=DagsterEventType.ASSET_OBSERVATION)
    observation = observed.dagster_event.event_specific_data.asset_observation
    assert observation.asset_key == AssetKey("production_model")
    assert observation.partition == outcome.dataset_run_id
    meta = {k: v.value for k, v in observation.metadata.items()}
    assert meta["decision"] == "candidate rejected"
    assert meta["candidate_version"] == outcome.candidate_version
    assert meta["production_version"] == outcome.production_version
    runs = mlflow.search_runs(
        experiment_names=["stock_assets"],
        search_all_experiments=False,
        filter_string=f"tags.dagster_run_id = '{outcome.run_id}'",
    )
    # closed, not left RUNNING; the verdict is a tag, not a FAILED status
    assert len(runs) == 1 and runs["status"].tolist() == ["FINISHED"]
    assert runs["tags.beats_production"].tolist() == ["rejected"]


def test_passing_check_moves_alias_and_logs_it(market):
    defs, instance, name = _defs(market, promotion_margin=-10.0)  # any candidate passes
    outcome = _run(defs, instance)
    assert outcome.success and outcome.check_passed is True
    assert outcome.production_version == outcome.candidate_version
    with PostgresResource().connect() as conn:
        log = history(conn, name)
    assert log["reason"].tolist() == ["bootstrap", "beats production"]
    assert log["new_version"].iloc[-1] == outcome.candidate_version
    assert log["dataset_run_id"].iloc[-1] == outcome.dataset_run_id
    # MLflow reads as a registry: runs named by what they are, model and versions described
    client = mlflow.MlflowClient()
    (parent,) = client.search_runs(
        [mlflow.get_experiment_by_name("stock_assets").experiment_id],
        f"tags.dagster_run_id = '{outcome.run_id}'",
    )
    assert parent.info.run_name == f"retrain {outcome.dataset_run_id}"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    names = sorted(c.info.run_name for c in children)
    assert names[0] == "naive bootstrap" and names[1:] == [f"trial {n}" for n in range(2)]
    assert "production" in client.get_registered_model(name).description
    described = client.get_model_version(name, outcome.candidate_version).description
    cutoff = str(CUTOFF)
    assert f"trained on sessions up to {cutoff}" in described and "vs naive" in described
    naive = client.get_model_version(name, log["new_version"].iloc[0]).description
    assert naive.startswith("naive model: the next close is today's close")

    # lineage on the candidate's MLflow run, and no run of the retraining left open
    version = mlflow.MlflowClient().get_model_version(name, outcome.candidate_version)
    params = mlflow.get_run(version.run_id).data.params
    assert params["dataset_run_id"] == outcome.dataset_run_id
    assert params["cutoff"] == str(CUTOFF) and params["dagster_run_id"] == outcome.run_id
    children = mlflow.search_runs(
        experiment_names=["stock_assets"],
        filter_string=f"tags.mlflow.parentRunId = '{version.run_id}'",
    )
    trials = children[children["tags.mlflow.runName"].str.startswith("trial ")]
    assert len(trials) == 2  # one nested run per Optuna trial
    assert set(children["status"]) == {"FINISHED"}

    # the model loaded by alias from the registry alone predicts a fresh window
    model = mlflow.pyfunc.load_model(f"models:/{name}@production")
    with PostgresResource().connect() as conn:
        fresh = prices_until(conn, ["SYN000", "SYN001"], dt.date(2019, 12, 31))
    preds = model.predict(fresh)
    later = preds[preds["as_of_date"] > CUTOFF]
    assert len(later) == 2 * len(fresh[fresh.trade_date > CUTOFF]) // 2
    assert (later["lower"] < later["predicted_close"]).all()
    assert (later["predicted_close"] < later["upper"]).all()
    with pytest.raises(Exception, match="predicts exactly those"):
        model.predict(fresh[fresh.ticker == "SYN000"])

    # roll back (undo) and promote by hand, through the journal
    with PostgresResource().connect() as conn:
        naive_version = log["new_version"].iloc[0]
        assert rollback(conn, name).new == naive_version
        assert production(name).version == naive_version
        move(conn, name, outcome.candidate_version, reason="manual promotion")
        log = history(conn, name)
        assert log["reason"].tolist()[-2:] == ["rollback", "manual promotion"]
        assert log["actor"].tolist() == ["bootstrap", "check", "cli", "cli"]
        assert set(log["status"]) == {"done"}
    assert production(name).version == outcome.candidate_version


def test_check_scores_the_candidate_as_training_did(market):
    """Against naive the window is the whole test split, and the logged model — predicting
    from raw prices through its own features and scalers — reproduces the training metrics."""
    defs, instance, _ = _defs(market)
    outcome = _run(defs, instance)
    _, _, url = market
    candidate = _table(
        url,
        "SELECT metrics FROM candidate_model WHERE dataset_run_id = %s",
        (outcome.dataset_run_id,),
    )
    trained = candidate["metrics"].iloc[0]["model"]
    check_md = _check_metadata(instance, outcome.run_id)
    assert check_md["production_version"] != outcome.candidate_version
    row = next(line for line in check_md["metrics"].splitlines() if "candidate" in line)
    assert f"| {trained['mae']:.4f} | {trained['rmse']:.4f} |" in row


def _check_metadata(instance: DagsterInstance, run_id: str) -> dict:
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is not None and event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            return {k: v.value for k, v in data.metadata.items()}
    raise AssertionError("no check evaluation in the run")


def test_rerun_is_deterministic_and_ignores_prices_after_cutoff(market):
    defs, instance, _ = _defs(market, promotion_margin=0.99)
    _, _, url = market
    first = _run(defs, instance)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE raw_prices SET open = open * 1000, high = high * 1000, low = low * 1000, "
            "close = close * 1000 WHERE trade_date > %s",
            (CUTOFF,),
        )
    try:
        second = _run(defs, instance)
    finally:
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE raw_prices SET open = open / 1000, high = high / 1000, low = low / 1000,"
                " close = close / 1000 WHERE trade_date > %s",
                (CUTOFF,),
            )
    assert second.dataset_run_id != first.dataset_run_id
    assert cutoff_of(second.dataset_run_id) == cutoff_of(first.dataset_run_id) == CUTOFF
    for table, cols in (
        ("processed_features", "*"),
        ("scalers", "ticker, features, params"),
        ("tuned_params", "params, best_value, trials_completed, trials_pruned"),
        ("candidate_model", "metrics, test_start, test_end"),
    ):
        a, b = (
            _table(url, f"SELECT {cols} FROM {table} WHERE dataset_run_id = %s", (key,))
            for key in (first.dataset_run_id, second.dataset_run_id)
        )
        a, b = (f.drop(columns=["dataset_run_id"], errors="ignore") for f in (a, b))
        keys = [c for c in ("ticker", "trade_date") if c in a.columns]
        if keys:  # a table's physical order is no promise: compare row by key
            a, b = (f.sort_values(keys, ignore_index=True) for f in (a, b))
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b, obj=table)


def test_cutoff_with_too_little_history_fails_clearly_and_registers_nothing(market):
    defs, instance, name = _defs(market)
    outcome = _run(defs, instance, cutoff=dt.date(2016, 12, 30))
    assert not outcome.ok and outcome.failed_steps == ["processed_features"]
    assert outcome.candidate_version is None and production(name) is None
    failure = next(
        r.dagster_event.event_specific_data.error.to_string()
        for r in instance.all_logs(outcome.run_id)
        if r.dagster_event is not None and r.dagster_event.is_step_failure
    )
    assert "too few for the splits" in failure
    # the reason reaches the CLI summary, the Dagster run and its MLflow run
    assert outcome.failure.startswith("step processed_features failed: ")
    assert "too few for the splits" in outcome.failure
    tags = instance.get_run_by_id(outcome.run_id).tags
    assert tags["stock_assets/failure"] == outcome.failure
    runs = mlflow.search_runs(
        experiment_names=["stock_assets"],
        filter_string=f"tags.dagster_run_id = '{outcome.run_id}'",
    )
    assert runs["tags.failure"].tolist() == [outcome.failure]


def test_cutoff_that_is_not_a_stored_session_is_refused(market):
    defs, instance, _ = _defs(market)
    outcome = _run(defs, instance, cutoff=dt.date(2019, 6, 29))  # a Saturday
    assert outcome.failed_steps == ["processed_features"]


def test_unfinished_study_is_resumed_and_a_finished_one_replaced(market):
    import optuna

    from stock_assets.ml.tuning import study_name as _study_name

    storage = optuna.storages.RDBStorage(PostgresResource().url_for_driver("psycopg2"))
    key = f"2019-06-28.t{uuid.uuid4().hex[:6]}"
    first = _study_name(storage, key)
    assert first == f"tuned_params/{key}/1"
    study = optuna.create_study(study_name=first, storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert _study_name(storage, key) == first  # interrupted: resume, keeping its trials
    study.set_user_attr("complete", True)
    assert _study_name(storage, key) == f"tuned_params/{key}/2"  # finished: a fresh study


def test_unreachable_tracking_store_is_a_clear_error(tmp_path):
    from stock_assets.lifecycle.registry import RegistryError

    bad = "postgresql+psycopg2://postgres:@/mlflow?host=/nonexistent-socket-dir"
    with pytest.raises(RegistryError, match="MLflow tracking store unreachable"):
        configure(bad, tmp_path)
    configure(tracking_uri(), load_settings().mlflow_artifacts)  # leave MLflow as it was


def test_tuning_objective_receives_no_calibration_or_test_rows(market, monkeypatch):
    import stock_assets.ml.tuning as tuning

    seen: list = []
    real_train = tuning.train

    def recording_train(panel, train_ends, val_ends, *args, **kwargs):
        seen.append((panel.dates, panel.dates[train_ends], panel.dates[val_ends]))
        return real_train(panel, train_ends, val_ends, *args, **kwargs)

    monkeypatch.setattr(tuning, "train", recording_train)
    defs, instance, _ = _defs(market, promotion_margin=0.99)
    outcome = _run(defs, instance)
    _, _, url = market
    splits = _table(
        url,
        "SELECT trade_date, split FROM processed_features "
        "WHERE dataset_run_id = %s AND ticker = 'SYN000'",
        (outcome.dataset_run_id,),
    ).set_index("trade_date")["split"]
    assert len(seen) == TINY["n_trials"]
    for dates, train_days, val_days in seen:
        assert set(splits.reindex(dates)) <= {"train", "gap", "validation"}
        assert set(splits.reindex(train_days)) == {"train"}
        assert set(splits.reindex(val_days)) == {"validation"}
        assert dates.max() == splits[splits == "validation"].index.max()


def test_serving_features_equal_stored_processed_features(market):
    """What daily_predictions computes for day D (features from each ticker's first stored row
    up to D) equals what processed_features stored for D, to 1e-9."""
    from stock_assets.ml.features import FEATURES, compute_features

    defs, instance, _ = _defs(market, promotion_margin=0.99)
    outcome = _run(defs, instance)
    _, _, url = market
    stored = _table(
        url, "SELECT * FROM processed_features WHERE dataset_run_id = %s", (outcome.dataset_run_id,)
    )
    with PostgresResource().connect() as conn:
        for day in (dt.date(2017, 3, 1), dt.date(2018, 11, 30), CUTOFF):
            serving = compute_features(prices_until(conn, ["SYN000", "SYN001"], day))
            a = serving[serving["trade_date"] == day].set_index("ticker")[list(FEATURES)]
            b = stored[stored["trade_date"] == day].set_index("ticker")[list(FEATURES)]
            assert len(a) == 2
            pd.testing.assert_frame_equal(a.sort_index(), b.sort_index(), atol=1e-9, rtol=0)


def test_an_extra_worker_joins_the_running_study_through_the_database(market):
    import optuna
    from dagster import AssetKey

    from stock_assets.commands.tune_worker import run_worker
    from stock_assets.ml.tuning import open_study
    from stock_assets.ml.tuning import study_name as _study_name

    defs, instance, _ = _defs(market, n_trials=3)
    key = "2019-06-28.r7"
    instance.add_dynamic_partitions("dataset_runs", [key])
    job = defs.resolve_job_def("retrain")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    def step(*assets: str):
        result = job.execute_in_process(
            instance=instance,
            partition_key=key,
            asset_selection=[AssetKey(a) for a in assets],
            run_config=quiet,
        )
        assert result.success
        return result

    step("processed_features", "scalers")
    storage = optuna.storages.RDBStorage(PostgresResource().url_for_driver("psycopg2"))
    study = _study_name(storage, key)
    open_study(storage, study, seed=0)  # what the tuned_params step opens first
    lines: list[str] = []
    assert run_worker(key, 3, lines.append, retraining={**TINY, "n_trials": 3}) == 3
    assert lines[0] == f"joined study {study}: 0 of 3 trials finished"
    step("tuned_params")  # the step finds the study's budget spent by the worker
    url = market[2]
    row = _table(url, "SELECT * FROM tuned_params WHERE dataset_run_id = %s", (key,)).iloc[0]
    assert row["study_name"] == study
    assert row["trials_completed"] + row["trials_pruned"] == 3
    with pytest.raises(ValueError, match=r"no open study for dataset run '2019-06-28\.r7'"):
        run_worker(key, 3, lines.append, retraining=TINY)  # the step closed the study
