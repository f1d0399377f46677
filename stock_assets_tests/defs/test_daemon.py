"""The real dagster-daemon and webserver, as processes on the embedded Postgres: the retraining
sensor asks for the first learned model and the daemon's run completes; a run that failed from
the CLI before the daemon ever ran is alerted, once. Bounded in time."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from stock_assets_tests.defs.test_alerts import webhook  # noqa: F401 (a fixture)

BIN = Path(sys.executable).parent
DEADLINE_SECONDS = 420


CODE = ["-m", "stock_assets.definitions"]
LAST_DAY = ["--partition", "2019-12-31"]  # the plain dagster tools name the code location


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def daemon_env(tmp_path_factory: pytest.TempPathFactory, webhook):  # noqa: F811
    home = tmp_path_factory.mktemp("daemon-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCK_ASSETS_", "DAGSTER_"))}
    env.update(
        PATH=f"{BIN}:{env['PATH']}",
        STOCK_ASSETS_HOME=str(home),
        STOCK_ASSETS_SOURCE="synthetic",
        STOCK_ASSETS_SYNTHETIC_TICKERS="2",
        STOCK_ASSETS_SYNTHETIC_START="2016-01-04",
        STOCK_ASSETS_SYNTHETIC_END="2019-12-31",
        STOCK_ASSETS_TRIALS="1",
        STOCK_ASSETS_MAX_EPOCHS="2",
        STOCK_ASSETS_FIRST_MODEL_SESSIONS="500",
        STOCK_ASSETS_PROMOTION_MARGIN="-10",
        STOCK_ASSETS_INGEST_RETRIES="0",
        STOCK_ASSETS_ALERT_WEBHOOK_URL=webhook[0],
    )
    setup = subprocess.run(
        ["bash", "-c", 'eval "$(stock-assets env)" && env'],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for line in setup.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.startswith(("DAGSTER_", "STOCK_ASSETS_", "MLFLOW_")):
            env[key] = value
    yield env, webhook[1]
    subprocess.run([str(BIN / "stock-assets"), "db", "stop"], env=env, capture_output=True)


def test_daemon_runs_a_sensor_requested_retraining(daemon_env):
    env, alerts = daemon_env
    subprocess.run(
        [
            "dagster",
            "asset",
            "materialize",
            *CODE,
            "--select",
            "raw_prices",
            "--partition-range",
            "2016-01-04...2019-12-31",
        ],
        env=env,
        capture_output=True,
        timeout=300,
        check=True,
        cwd=env["STOCK_ASSETS_HOME"],
    )
    failing = subprocess.run(  # launched from the CLI, in process, before any daemon ran
        ["dagster", "asset", "materialize", *CODE, "--select", "raw_prices", *LAST_DAY],
        env={**env, "STOCK_ASSETS_TICKERS": "SYN000,NOPE"},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=env["STOCK_ASSETS_HOME"],
    )
    assert failing.returncode != 0 and "unknown ticker(s) NOPE" in failing.stdout + failing.stderr
    subprocess.run(
        ["dagster", "sensor", "start", *CODE, "retraining_sensor"],
        env=env,
        capture_output=True,
        timeout=120,
        check=True,
        cwd=env["STOCK_ASSETS_HOME"],
    )
    port = _free_port()
    logs = Path(env["STOCK_ASSETS_HOME"])
    commands = {
        "daemon": ["dagster-daemon", "run", *CODE],
        "webserver": ["dagster-webserver", *CODE, "-h", "127.0.0.1", "-p", str(port)],
    }
    with contextlib.ExitStack() as stack:
        procs = []
        for name, command in commands.items():
            log = stack.enter_context(open(logs / f"{name}.log", "w"))
            procs.append(
                subprocess.Popen(
                    command,
                    env=env,
                    cwd=logs,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        stack.callback(_stop, procs)
        instance = _wait_for_retraining(env, port, logs)
        _wait_for_failure_alert(instance, alerts, logs)


def _wait_for_failure_alert(instance, alerts: list[dict], logs: Path) -> None:
    """The CLI run's failure reaches the webhook once (run_failure_alert's first tick looks back
    STOCK_ASSETS_ALERT_FIRST_TICK_HOURS), and the retraining run, a success, is not alerted."""
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

    (failed,) = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
    deadline = time.monotonic() + 120  # the sensor ticks every 30 s
    while time.monotonic() < deadline and not any(a["kind"] == "run_failure" for a in alerts):
        time.sleep(2)
    time.sleep(35)  # one more tick: nothing is sent twice
    runs = [a for a in alerts if a["kind"] == "run_failure"]
    assert [a["details"]["run_id"] for a in runs] == [failed.run_id], (
        logs / "daemon.log"
    ).read_text()[-3000:]
    assert "unknown ticker(s) NOPE" in runs[0]["body"]


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _wait_for_retraining(env: dict, port: int, logs: Path) -> None:
    from dagster import DagsterInstance
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

    previous = os.environ.get("STOCK_ASSETS_DAGSTER_PG_URL")
    os.environ["STOCK_ASSETS_DAGSTER_PG_URL"] = env["STOCK_ASSETS_DAGSTER_PG_URL"]
    try:
        instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    finally:
        if previous is None:
            os.environ.pop("STOCK_ASSETS_DAGSTER_PG_URL")
        else:
            os.environ["STOCK_ASSETS_DAGSTER_PG_URL"] = previous
    deadline = time.monotonic() + DEADLINE_SECONDS
    webserver_up, run = False, None
    while time.monotonic() < deadline:
        if not webserver_up:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    webserver_up = True
            except OSError:
                pass
        runs = instance.get_runs(RunsFilter(job_name="retrain"))
        if runs and runs[0].status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE):
            run = runs[0]
            break
        time.sleep(3)
    assert webserver_up, (logs / "webserver.log").read_text()[-2000:]
    assert run is not None, (logs / "daemon.log").read_text()[-3000:]
    assert run.status == DagsterRunStatus.SUCCESS, (logs / "daemon.log").read_text()[-3000:]
    assert run.tags.get("dagster/sensor_name") == "retraining_sensor"
    assert "first learned model" in run.tags["stock_assets/reason"]
    return instance
