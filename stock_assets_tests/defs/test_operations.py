"""Daily operations and the retraining sensor on a real instance, registry and Postgres.

A synthetic market of 5 tickers whose volatility triples on REGIME_DAY, and its stationary twin.
Each scenario gets its own registered-model name, so registries never mix.
"""

import datetime as dt
import json
import uuid

import numpy as np
import pandas as pd
import psycopg2
import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    SensorResult,
    build_sensor_context,
)
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.definitions import build_definitions
from stock_assets.defs.resources import PostgresResource
from stock_assets.defs.sensors import FROM_START
from stock_assets.lifecycle.policy import Thresholds
from stock_assets.lifecycle.scoring import rolling_summary
from stock_assets.market.calendars import sessions_between
from stock_assets.market.sources import Regime, SyntheticSource
from stock_assets.ml.features import SERVING_HISTORY, compute_features
from stock_assets.settings import load_settings
from stock_assets.storage.prices import prices_until
from stock_assets.storage.writer import query_frame

REGIME_DAY = dt.date(2019, 6, 3)
START, END = dt.date(2016, 1, 4), dt.date(2019, 7, 31)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
TICKERS = [f"SYN{i:03d}" for i in range(5)]
DETECTION_SESSIONS = 10  # the sensor must fire within this many sessions of REGIME_DAY


def _market(wild: bool) -> SyntheticSource:
    regimes = [Regime(dt.date(1990, 1, 1), 0.0002, 0.01)]
    if wild:
        regimes.append(Regime(REGIME_DAY, 0.0002, 0.03))
    return SyntheticSource(seed=4, n_tickers=5, start=START, end=END, regimes=tuple(regimes))


def _reset_tables(url: str) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for table in (
            "raw_prices",
            "corporate_actions",
            "daily_predictions",
            "interval_state",
            "performance_log",
        ):
            cur.execute(f"DROP TABLE IF EXISTS {table} CASCADE")


def _scenario(pg_server, wild: bool):
    """Ingest the market, bootstrap naive before the span, run daily operations over it."""
    url = pg_server.for_db("stocks")
    _reset_tables(url)
    name = f"ops_{uuid.uuid4().hex[:8]}"
    settings = load_settings().with_market(start_date=str(START))
    defs = build_definitions(settings, source=_market(wild), retraining={"model_name": name})
    instance = DagsterInstance.ephemeral()

    def run(job: str, first: str, last: str):
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance,
            run_config=QUIET,
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        )
        assert result.success
        return result

    run("ingest_prices", str(START), str(END))
    # A recent dataset run keeps the first-model and staleness rules quiet over the span.
    instance.add_dynamic_partitions("dataset_runs", ["2019-05-10"])
    run("daily_operations", "2019-05-01", "2019-05-01")  # bootstraps naive on calm data
    run("daily_operations", "2019-05-02", "2019-07-31")
    return defs, instance, name, url


@pytest.fixture(scope="module")
def wild(pg_server):
    return _scenario(pg_server, wild=True)


def _evaluate(defs, instance, cursor=None):
    sensor = defs.resolve_sensor_def("retraining_sensor")
    resources = {
        "stocks_db": PostgresResource(),
        "registry": defs.resources["registry"],
        "market": defs.resources["market"],
        "policy": defs.resources["policy"],
    }
    context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return sensor(context)


def test_predictions_target_the_next_session_and_after_holidays(wild):
    _, _, name, url = wild
    rows = query_frame(
        psycopg2.connect(url),
        "SELECT as_of_date, target_date, ticker, model_name, in_sample, last_close, lower, "
        "predicted_close, upper FROM daily_predictions WHERE as_of_date IN "
        "('2019-07-03', '2019-07-05')",
    )
    targets = dict(
        zip(rows["as_of_date"].astype(str), rows["target_date"].astype(str), strict=False)
    )
    assert targets == {"2019-07-03": "2019-07-05", "2019-07-05": "2019-07-08"}
    assert set(rows["model_name"]) == {name} and not rows["in_sample"].any()
    assert (rows["lower"] < rows["predicted_close"]).all()
    assert (rows["predicted_close"] < rows["upper"]).all()
    after_holiday = query_frame(
        psycopg2.connect(url),
        "SELECT DISTINCT as_of_date FROM performance_log WHERE trade_date = '2019-07-05'",
    )
    assert after_holiday["as_of_date"].astype(str).tolist() == ["2019-07-03"]
    holiday = query_frame(
        psycopg2.connect(url),
        "SELECT count(*) AS n FROM daily_predictions WHERE as_of_date = '2019-07-04'",
    )
    assert holiday["n"].iloc[0] == 0


def test_json_files_like_the_old_system(wild):
    folder = load_settings().home / "predictions"
    day = json.loads((folder / "historical" / "2019-07-31.json").read_text())
    latest = json.loads((folder / "latest_predictions.json").read_text())
    assert day == latest and day["target_date"] == "2019-08-01"
    assert sorted(day["predictions"]) == TICKERS


def test_serving_features_equal_training_features(wild):
    """daily_predictions reads each ticker's last SERVING_HISTORY rows up to D; processed_features
    reads from the first row; for several D they agree to 1e-9."""
    with PostgresResource().connect() as conn:
        full = compute_features(prices_until(conn, TICKERS, dt.date(2019, 7, 31)))
        for day in (dt.date(2018, 3, 1), dt.date(2019, 1, 2), dt.date(2019, 7, 31)):
            tail = prices_until(conn, TICKERS, day, rows=SERVING_HISTORY)
            serving = compute_features(tail)
            a = serving[serving.trade_date == day].reset_index(drop=True)
            b = full[full.trade_date == day].reset_index(drop=True)
            pd.testing.assert_frame_equal(a, b, atol=1e-9, rtol=0)


def test_sensor_fires_soon_after_a_volatility_regime_change(wild):
    defs, instance, _, _ = wild
    result = _evaluate(defs, instance, cursor=FROM_START)  # walk the stored history
    assert isinstance(result, SensorResult) and len(result.run_requests) == 1
    request = result.run_requests[0]
    cutoff = dt.date.fromisoformat(request.partition_key)
    delay = len(sessions_between(REGIME_DAY, cutoff)) - 1
    print(
        f"regime change {REGIME_DAY}: sensor fired at {cutoff}, {delay} sessions later, "
        f"because {request.tags['stock_assets/reason']}"
    )
    assert 0 <= delay <= DETECTION_SESSIONS, (cutoff, request.tags)
    assert "coverage" in request.tags["stock_assets/reason"]
    assert result.dynamic_partitions_requests[0].partition_keys == [request.partition_key]


def test_sensor_stays_quiet_on_a_stationary_market(pg_server):
    defs, instance, _, _ = _scenario(pg_server, wild=False)
    result = _evaluate(defs, instance)
    assert not result.run_requests
    assert "healthy" in result.skip_reason.skip_message


# ---- rules one at a time, on synthetic summaries reported to a real instance ----------------


def _report(instance, day: str, **summary) -> None:
    base = {
        "n": 100,
        "sessions": 20,
        "mae": 1.0,
        "mape": 1.0,
        "directional_accuracy": 0.5,
        "skill": 0.0,
        "coverage": 0.8,
    }
    base.update(summary)
    instance.report_runless_asset_event(
        AssetMaterialization(
            asset_key="performance_log",
            partition=day,
            metadata={f"rolling_{k}": v for k, v in base.items()},
        )
    )


@pytest.fixture
def rules(wild):
    """The wild market's raw_prices, a fresh instance and registry per test."""
    defs, _, _, _ = wild
    instance = DagsterInstance.ephemeral()
    name = f"rules_{uuid.uuid4().hex[:8]}"
    settings = load_settings().with_market(start_date=str(START))
    defs = build_definitions(settings, source=_market(True), retraining={"model_name": name})
    return defs, instance


def test_degraded_skill_requests_exactly_one_run(rules):
    defs, instance = rules
    instance.add_dynamic_partitions("dataset_runs", ["2019-06-03"])
    days = [str(d) for d in sessions_between(dt.date(2019, 7, 1), dt.date(2019, 7, 9))]
    for day in days:
        _report(instance, day, skill=-0.2)
    result = _evaluate(defs, instance, cursor=FROM_START)
    assert len(result.run_requests) == 1
    # five consecutive sessions below the floor: the fifth one is the cutoff
    assert result.run_requests[0].partition_key == days[4]
    again = _evaluate(defs, instance, cursor=result.cursor)
    assert not again.run_requests  # the cursor moved on: no second request for the same breach


def test_a_sensor_turned_on_over_history_starts_from_the_newest_sessions(rules):
    """A breach long past (five bad sessions, then healthy ones) is history: the first tick
    acts on the present, unless the cursor says to walk from the start."""
    defs, instance = rules
    instance.add_dynamic_partitions("dataset_runs", ["2019-06-03"])
    days = [str(d) for d in sessions_between(dt.date(2019, 7, 1), dt.date(2019, 7, 31))]
    for day in days[:5]:
        _report(instance, day, skill=-0.2)
    for day in days[5:]:
        _report(instance, day)
    first = _evaluate(defs, instance)
    assert not first.run_requests
    assert first.skip_reason.skip_message.startswith("healthy: 5 new performance summaries")
    assert json.loads(first.cursor)["newest_session"] == days[-1]
    walked = _evaluate(defs, instance, cursor=FROM_START)
    assert [r.partition_key for r in walked.run_requests] == [days[4]]


def test_healthy_summary_skips_with_a_reason(rules):
    defs, instance = rules
    instance.add_dynamic_partitions("dataset_runs", ["2019-07-01"])
    _report(instance, "2019-07-10")
    result = _evaluate(defs, instance)
    assert not result.run_requests
    assert result.skip_reason.skip_message.startswith("healthy")


def test_cooldown_and_in_flight_runs_suppress_a_breach(rules):
    defs, instance = rules
    instance.add_dynamic_partitions("dataset_runs", ["2019-07-05"])
    _report(instance, "2019-07-10", mape=9.0)
    cooled = _evaluate(defs, instance)
    assert not cooled.run_requests and "cooldown" in cooled.skip_reason.skip_message

    instance.add_run(
        DagsterRun(job_name="retrain", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED)
    )
    _report(instance, "2019-07-30", mape=9.0)
    busy = _evaluate(defs, instance, cursor=cooled.cursor)
    assert not busy.run_requests and "in progress" in busy.skip_reason.skip_message


def test_first_model_rule(rules):
    defs, instance = rules
    result = _evaluate(defs, instance)  # no dataset run, nothing in the registry, 3+ years
    assert len(result.run_requests) == 1
    assert result.run_requests[0].partition_key == str(END)
    assert "first learned model" in result.run_requests[0].tags["stock_assets/reason"]
    strict = build_definitions(
        load_settings().with_market(start_date=str(START)),
        source=_market(True),
        retraining={"model_name": defs.resources["registry"].model_name},
        thresholds=Thresholds(first_model_sessions=5000),
    )
    waiting = _evaluate(strict, instance)
    assert "waiting for history" in waiting.skip_reason.skip_message


def test_staleness_rule(rules):
    defs, instance = rules
    instance.add_dynamic_partitions("dataset_runs", ["2019-01-31"])
    result = _evaluate(defs, instance)
    assert len(result.run_requests) == 1
    assert "sessions old" in result.run_requests[0].tags["stock_assets/reason"]


def test_impossible_thresholds_fail_when_definitions_load():
    with pytest.raises(ValueError, match=r"coverage significance 1\.5 must be in \(0, 1\)"):
        build_definitions(thresholds=Thresholds(coverage_significance=1.5))


def test_in_sample_rows_never_count():
    rows = pd.DataFrame(
        {
            "trade_date": [dt.date(2019, 7, 1)] * 4,
            "in_sample": [True, True, False, False],
            "abs_error": [0.0, 0.0, 2.0, 2.0],
            "naive_abs_error": [1.0, 1.0, 1.0, 1.0],
            "pct_error": [0.0, 0.0, 2.0, 2.0],
            "direction_hit": [True, True, False, False],
            "interval_hit": [True, True, False, True],
            "last_close": [100.0] * 4,
            "lower": [99.0] * 4,
            "upper": [101.0] * 4,
            "actual_close": [100.0, 100.0, 102.0, 100.0],
        }
    )
    summary = rolling_summary(rows, [dt.date(2019, 7, 1)])
    assert summary["n"] == 2 and summary["mae"] == 2.0 and summary["skill"] == -1.0
    assert summary["coverage"] == 0.5 and summary["hits"] == 1
    # Winkler in log-return %: widths ≈ 2 each, plus 2/0.2 × the miss of ≈ 0.99 on one row
    width = 100 * (np.log(1.01) - np.log(0.99))
    miss = 100 * (np.log(1.02) - np.log(1.01))
    assert summary["interval_score_pct"] == pytest.approx(width + 10 * miss / 2)
    assert np.isfinite(summary["mape"])
    # baselines on the same rows: always-up's direction; naive has no interval on older rows
    assert summary["always_up_directional_accuracy"] == 0.5 and "naive_coverage" not in summary
    banded = rows.assign(
        naive_lower=[99.5, 99.5, 99.5, np.nan],
        naive_upper=[100.5, 100.5, 103.0, np.nan],
        naive_interval_hit=[True, True, True, None],
    )
    summary = rolling_summary(banded, [dt.date(2019, 7, 1)])
    assert summary["naive_n"] == 1 and summary["naive_coverage"] == 1.0
    assert summary["naive_interval_score_pct"] == pytest.approx(
        100 * (np.log(1.03) - np.log(0.995))
    )


def test_a_ticker_missing_its_session_is_not_predicted_and_is_marked(wild):
    """Never filled with an older close: SYN003 has no 2019-07-31 row, so no prediction."""
    defs, instance, _, url = wild
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT * FROM raw_prices WHERE trade_date = '2019-07-31' AND ticker = 'SYN003'"
        )
        kept = cur.fetchone()
        cur.execute("DELETE FROM raw_prices WHERE trade_date = '2019-07-31' AND ticker = 'SYN003'")
    try:
        result = defs.resolve_job_def("daily_operations").execute_in_process(
            instance=instance,
            partition_key="2019-07-31",
            run_config=QUIET,
            asset_selection=[AssetKey("daily_predictions"), AssetKey("interval_state")],
        )
        assert result.success
        rows = query_frame(
            psycopg2.connect(url),
            "SELECT ticker FROM daily_predictions WHERE as_of_date = '2019-07-31' ORDER BY 1",
        )
        assert rows["ticker"].tolist() == ["SYN000", "SYN001", "SYN002", "SYN004"]
        (materialization,) = [
            m
            for m in result.asset_materializations_for_node("daily_predictions")
            if m.asset_key == AssetKey("daily_predictions")
        ]
        assert materialization.metadata["missing_tickers"].value == {
            "SYN003": "no stored row that day"
        }
    finally:
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO raw_prices VALUES (" + ", ".join(["%s"] * len(kept)) + ")", kept
            )
        defs.resolve_job_def("daily_operations").execute_in_process(
            instance=instance,
            partition_key="2019-07-31",
            run_config=QUIET,
            asset_selection=[AssetKey("daily_predictions"), AssetKey("interval_state")],
        )
    rows = query_frame(
        psycopg2.connect(url),
        "SELECT count(*) AS n FROM daily_predictions WHERE as_of_date = '2019-07-31'",
    )
    assert rows["n"].iloc[0] == 5


def test_model_reading_unknown_features_is_a_clear_error():
    from stock_assets.ml.bundle import Bundle, predict_from_prices

    bundle = Bundle(
        kind="lstm",
        tickers=TICKERS,
        half_width=0.01,
        seq_len=5,
        features=["ret_1", "sentiment_score"],
    )
    prices = _market(False).fetch(TICKERS, START, dt.date(2017, 1, 31))
    with pytest.raises(ValueError, match=r"feature\(s\) \['sentiment_score'\]"):
        predict_from_prices(bundle, None, prices)


def test_unreachable_database_during_a_tick_is_a_clear_error(rules):
    from stock_assets.runtime.postgres import DatabaseUnavailable

    defs, instance = rules
    instance.add_dynamic_partitions("dataset_runs", ["2019-07-01"])
    sensor = defs.resolve_sensor_def("retraining_sensor")
    dead = PostgresResource(postgres_url="postgresql://postgres:@/stocks?host=/nonexistent")
    context = build_sensor_context(
        instance=instance,
        resources={
            "stocks_db": dead,
            "registry": defs.resources["registry"],
            "market": defs.resources["market"],
            "policy": defs.resources["policy"],
        },
    )
    with pytest.raises(DatabaseUnavailable, match="cannot connect to Postgres at"):
        sensor(context)


def test_naive_bootstrap_artifacts_live_under_the_state_folder(wild):
    """The first prediction registers naive; its MLflow run and artifacts belong to the
    platform's experiment under the state folder, not ./mlruns of the working directory."""
    import mlflow

    from stock_assets.lifecycle.registry import EXPERIMENT, production

    _, _, name, _ = wild
    current = production(name)
    assert current is not None and current.kind == "naive"
    run = mlflow.get_run(current.run_id)
    assert mlflow.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.info.artifact_uri.startswith(load_settings().mlflow_artifacts.as_uri())
