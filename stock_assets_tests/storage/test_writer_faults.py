"""Slice writes under a held lock, SIGKILLed writers and two racing writers: real processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

from stock_assets.storage.writer import Timeouts, WriterBusy, replace_slice
from stock_assets_tests.conftest import query
from stock_assets_tests.storage.writer_proc import APPLICATION, day_slice, rows

CHILD = [sys.executable, "-m", "stock_assets_tests.storage.writer_proc"]


def _child(url: str, table: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*CHILD, url, table, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _tags(url: str, table: str, first: int, last: int) -> list[tuple]:
    """(writer, version, rows, distinct keys) of days [first, last)."""
    where = day_slice(first, last)
    return query(
        url,
        f"SELECT writer, version, count(*), count(DISTINCT (trade_date, ticker)) FROM {table} "
        "WHERE trade_date >= %s AND trade_date < %s GROUP BY 1, 2",
        (where.start, where.end),
    )


def _until_server_ended_writers(url: str, timeout: float = 30.0) -> None:
    """The server ends a killed client's session once it has finished (committed or rolled
    back) what the client sent: only then is the slice's outcome settled."""
    deadline = time.monotonic() + timeout
    while query(
        url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (APPLICATION,)
    ) != [(0,)]:
        assert time.monotonic() < deadline, "the killed writer's session did not end"
        time.sleep(0.05)


def test_a_writer_behind_a_held_lock_fails_clearly_and_writes_nothing(conn, stocks_url):
    replace_slice(conn, "held", rows(0, 3, 4, "A", 1), day_slice(0, 3))
    holder = psycopg2.connect(stocks_url)
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('stock_assets.held'))")
    started = time.monotonic()
    with pytest.raises(WriterBusy, match=r"'held': another writer held its lock for more than 1 s"):
        replace_slice(
            conn, "held", rows(0, 3, 4, "B", 2), day_slice(0, 3), timeouts=Timeouts(lock=1)
        )
    assert time.monotonic() - started < 30
    holder.rollback()
    holder.close()
    assert _tags(stocks_url, "held", 0, 3) == [("A", 1, 12, 12)]


def test_a_statement_past_its_timeout_is_cancelled_and_writes_nothing(conn, stocks_url):
    replace_slice(conn, "slow", rows(0, 3, 4, "A", 1), day_slice(0, 3))
    holder = psycopg2.connect(stocks_url)
    with holder.cursor() as cur:  # a row lock the DELETE must wait for, past the advisory lock
        cur.execute("SELECT * FROM slow FOR UPDATE")
    with pytest.raises(WriterBusy, match=r"'slow': the write ran longer than 1 s"):
        replace_slice(
            conn,
            "slow",
            rows(0, 3, 4, "B", 2),
            day_slice(0, 3),
            timeouts=Timeouts(lock=60, statement=1),
        )
    holder.rollback()
    holder.close()
    assert _tags(stocks_url, "slow", 0, 3) == [("A", 1, 12, 12)]


KILLS = 20
SLICE_DAYS, SLICE_TICKERS = 20, 5_000  # 100,000 rows


def test_sigkilled_writers_leave_each_slice_old_or_new(conn, stocks_url):
    """20 writers replacing a 100k-row slice, each SIGKILLed at a random point of its write."""
    replace_slice(conn, "killed", rows(0, SLICE_DAYS, SLICE_TICKERS, "A", 0), day_slice(0, 20))
    replace_slice(conn, "killed", rows(20, 25, 10, "N", 0), day_slice(20, 25))  # a neighbour
    args = ["--days", "0", str(SLICE_DAYS), "--tickers", str(SLICE_TICKERS)]
    timing = _child(stocks_url, "killed", *args, "--version", "1000")
    started = time.monotonic()
    timing.stdin.write("go\n")
    timing.stdin.flush()
    assert timing.stdout.readline().startswith("done")
    write_seconds = time.monotonic() - started
    timing.wait(timeout=60)
    rng = random.Random(13)
    outcomes = {"old": 0, "new": 0}
    version = 1000
    for kill in range(KILLS):
        proc = _child(stocks_url, "killed", *args, "--version", str(kill + 1))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(rng.uniform(0, 1.3 * write_seconds))  # before, during or after the COPY
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        _until_server_ended_writers(stocks_url)  # a COMMIT sent before the kill may still land
        (tag,) = [t for t in _tags(stocks_url, "killed", 0, SLICE_DAYS)]  # one version only
        assert tag[2:] == (SLICE_DAYS * SLICE_TICKERS,) * 2, f"kill {kill}: partial slice {tag}"
        assert tag[1] in (version, kill + 1), f"kill {kill}: {tag}"
        outcomes["new" if tag[1] == kill + 1 else "old"] += 1
        version = tag[1]
        # the next writer is not blocked by the killed one's lock
        replace_slice(
            conn, "killed", rows(20, 25, 10, "N", kill), day_slice(20, 25), Timeouts(lock=10)
        )
    assert outcomes["old"] + outcomes["new"] == KILLS
    print(f"\nkilled writers: {KILLS} kills, write {write_seconds:.2f} s, {outcomes}, partial 0")


RACE_WRITES = 200


def test_two_writers_racing_on_overlapping_slices(stocks_url):
    """Writer A replaces days [0, 6), B days [3, 10), 200 times each, starting with no table."""
    a = _child(stocks_url, "raced", "--writer", "A", "--days", "0", "6", "--repeat", "200")
    b = _child(stocks_url, "raced", "--writer", "B", "--days", "3", "10", "--repeat", "200")
    snapshots: list[list[tuple]] = []
    stop = threading.Event()

    def sample() -> None:
        reader = psycopg2.connect(stocks_url)
        reader.set_session(isolation_level="REPEATABLE READ", readonly=True)
        while not stop.is_set():
            with reader.cursor() as cur:
                cur.execute("SELECT to_regclass('raced') IS NOT NULL")
                if cur.fetchone()[0]:
                    cur.execute(
                        "SELECT (trade_date - DATE '2024-01-01') / 3 AS zone, writer, version, "
                        "count(*), count(DISTINCT (trade_date, ticker)) FROM raced GROUP BY 1, 2, 3"
                    )
                    snapshots.append(cur.fetchall())
            reader.rollback()
            time.sleep(0.005)
        reader.close()

    thread = threading.Thread(target=sample)
    thread.start()
    for proc in (a, b):
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=600)[0] for proc in (a, b)]
    stop.set()
    thread.join()
    assert [proc.returncode for proc in (a, b)] == [0, 0]
    assert [out.count("done") for out in outputs] == [RACE_WRITES, RACE_WRITES]
    seen = [s for s in snapshots if s]
    assert len(seen) >= 10
    for snapshot in [*seen, _zones(stocks_url)]:
        zones: dict[int, list[tuple]] = {}
        for zone, writer, version, n, keys in snapshot:
            zones.setdefault(zone, []).append((writer, version, n, keys))
        # zones of 3 days: [0,3) only A writes, [3,6) both, [6,9) and day 9 only B; before
        # its first write a writer's own zone is absent
        assert sorted(zones) in ([1, 2, 3], [0, 1], [0, 1, 2, 3])
        for zone, tags in zones.items():
            assert len(tags) == 1, f"zone {zone} mixes writes: {tags}"  # one write per zone
            (_, _, n, keys) = tags[0]
            assert n == keys == (150 if zone < 3 else 50)  # exactly one row per key
        assert zones.get(0, [("A",)])[0][0] == "A" and zones.get(2, [("B",)])[0][0] == "B"
    assert sorted(z for z, *_ in _zones(stocks_url)) == [0, 1, 2, 3]
    print(f"\nraced writers: 2 × {RACE_WRITES} writes, {len(seen)} snapshots, partial 0")


def _zones(url: str) -> list[tuple]:
    return query(
        url,
        "SELECT (trade_date - DATE '2024-01-01') / 3, writer, version, count(*), "
        "count(DISTINCT (trade_date, ticker)) FROM raced GROUP BY 1, 2, 3",
    )
