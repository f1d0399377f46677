"""One day's ingest of 500 tickers on `synthetic`, with a year already stored: the overlap
re-read, validation before write, and the writes (rejections and gaps, actions, bars).

Side by side on the same day: the write path as the raw_prices step runs it, and the same path
without validation (the reference). Figures: each stage's time, validation's share of the
write path (target ≤ 10 %), the wall time and peak RSS of the real Dagster run of the day.
"""

import datetime as dt
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import bench_home

HOME = bench_home("ingest-day")

import pandas as pd  # noqa: E402
from dagster import DagsterInstance  # noqa: E402

from stock_assets.definitions import build_definitions  # noqa: E402
from stock_assets.defs.ingestion import missing_rows, rejected_rows  # noqa: E402
from stock_assets.defs.resources import PostgresResource  # noqa: E402
from stock_assets.market.ingest import collect_prices, split_collected  # noqa: E402
from stock_assets.market.sources import SyntheticSource  # noqa: E402
from stock_assets.market.validation import missing_keys, validate  # noqa: E402
from stock_assets.runtime.postgres import embedded_stop  # noqa: E402
from stock_assets.runtime.state import prepare  # noqa: E402
from stock_assets.settings import load_settings  # noqa: E402
from stock_assets.storage import prices as stored  # noqa: E402

FIRST, DAY = dt.date(2023, 1, 3), dt.date(2024, 1, 10)
N, OVERLAP, REPEATS = 500, 5, 5
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_day(conn, source, tickers, validated: bool) -> dict[str, float]:
    """The raw_prices step's work for DAY, stage by stage (Dagster's own events aside)."""
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    previous = stored.last_rows_before(conn, DAY, tickers)
    overlap = stored.last_sessions_before(conn, DAY, OVERLAP)
    kept = stored.stored_bars(conn, tickers, overlap[0], DAY)
    t["overlap re-read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    collected = collect_prices(source, tickers, overlap[0], DAY)
    t["fetch (synthetic)"] = time.perf_counter() - t0
    frame = collected.frame
    t0 = time.perf_counter()
    fresh = frame[frame["trade_date"] >= DAY]
    if validated:
        checked = validate(fresh, previous)
        good, rejected = checked.good, checked.rejected
        missing = missing_keys(collected.missing, rejected, good)
    else:
        good, rejected, missing = fresh, fresh.iloc[:0].assign(rule="", detail=""), None
    t["validation"] = time.perf_counter() - t0
    assert len(kept) >= OVERLAP * N
    t0 = time.perf_counter()
    bars, actions = split_collected(good)
    if missing is None:
        missing = collected.missing.iloc[:0]
    stored.write_ingest(
        conn,
        DAY,
        DAY,
        bars,
        actions,
        rejected_rows(rejected, "bench"),
        missing_rows(missing, "bench"),
    )
    t["writes"] = time.perf_counter() - t0
    return t


def main() -> None:
    prepare(load_settings())
    tickers = [f"SYN{i:03d}" for i in range(N)]
    source = SyntheticSource(seed=1, tickers=tuple(tickers), start=FIRST, end=DAY)
    history = collect_prices(source, tickers, FIRST, DAY - dt.timedelta(days=1)).frame
    db = PostgresResource()
    with db.connect() as conn:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS raw_prices, corporate_actions CASCADE")
        conn.commit()
        bars, actions = split_collected(history)
        empty = history.iloc[:0]
        stored.write_ingest(
            conn,
            FIRST,
            DAY - dt.timedelta(days=1),
            bars,
            actions,
            rejected_rows(empty.assign(rule="", detail=""), "bench"),
            missing_rows(empty[["trade_date", "ticker"]].assign(reason=""), "bench"),
        )
        print(f"state {HOME}: {len(bars):,} stored rows, {N} tickers, day {DAY}")
        runs = {True: [], False: []}
        for _ in range(REPEATS):  # interleaved: both see the same machine load
            for validated in (True, False):
                runs[validated].append(one_day(conn, source, tickers, validated))
    for validated, label in ((True, "ours (validated)"), (False, "reference (no validation)")):
        best = pd.DataFrame(runs[validated]).median()
        stages = "  ".join(f"{k} {v * 1000:6.1f} ms" for k, v in best.items())
        print(f"{label:<26} total {best.sum() * 1000:7.1f} ms  {stages}")
    ours = pd.DataFrame(runs[True]).median()
    path = ours["overlap re-read"] + ours["validation"] + ours["writes"]
    share = ours["validation"] / path
    print(
        f"validation share of the write path (re-read + validation + writes): {share:.1%} "
        "(target ≤ 10 %)"
    )

    settings = load_settings().with_market(start_date=str(FIRST), tickers=tuple(tickers))
    defs = build_definitions(settings, source=source)
    job = defs.resolve_job_def("ingest_prices")
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        result = job.execute_in_process(
            instance=DagsterInstance.ephemeral(), partition_key=str(DAY), run_config=QUIET
        )
        walls.append(time.perf_counter() - t0)
        assert result.success
    print(f"Dagster run of {DAY} (500 tickers): median wall {sorted(walls)[1]:.2f} s")
    print(f"peak RSS {rss_mib():.0f} MiB")


if __name__ == "__main__":
    try:
        main()
    finally:
        embedded_stop(load_settings().pgdata)  # the benchmark's own server, not the user's
