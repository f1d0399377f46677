"""(b) The ingestion write path on `synthetic`, 500 tickers × 10 years (≈1.26 M rows), and the
adjusted read every dataset run and daily prediction makes.

Write: what a single-run backfill of `raw_prices` does after fetching — split the source's
frame into bars and corporate actions, replace both slices (slice check, Arrow CSV, DELETE +
COPY in one transaction each) and refresh the `adjusted_prices` view — next to a raw COPY of the
same bars, pre-serialized, into the same table. Targets: throughput ≥ 50 % of raw COPY, peak RSS
≤ 2 GiB, a rerun keeps the row count. Read: `prices_until` (bars + actions known by the date,
adjusted point in time) next to a plain SELECT of the same rows; target ≥ 50 % of its throughput.
"""

import datetime as dt
import io
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import bench_home, stop_own_server

HOME = bench_home("io")

from stock_assets.defs.resources import PostgresResource  # noqa: E402
from stock_assets.market.ingest import collect_prices, split_collected  # noqa: E402
from stock_assets.market.sources import Dividend, Split, SyntheticSource  # noqa: E402
from stock_assets.runtime.state import prepare  # noqa: E402
from stock_assets.settings import load_settings  # noqa: E402
from stock_assets.storage.prices import ensure_adjusted_view, prices_until  # noqa: E402
from stock_assets.storage.schema import CORPORATE_ACTIONS, RAW_PRICES  # noqa: E402
from stock_assets.storage.writer import (  # noqa: E402
    Slice,
    _to_csv,
    query_frame,
    replace_slice,
    table_columns,
)

FIRST, LAST = dt.date(2015, 1, 2), dt.date(2024, 12, 31)
N = 500


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write(conn, frame, window) -> None:
    bars, actions = split_collected(frame)
    for table, rows in ((CORPORATE_ACTIONS, actions), (RAW_PRICES, bars)):
        replace_slice(conn, table.name, rows, window, list(table.primary_key))
    ensure_adjusted_view(conn)


def main() -> None:
    prepare(load_settings())
    tickers = tuple(f"SYN{i:03d}" for i in range(N))
    source = SyntheticSource(  # a split every 10th ticker, a quarterly dividend every 5th
        seed=1,
        tickers=tickers,
        start=FIRST,
        end=LAST,
        splits=tuple(Split(t, dt.date(2020, 8, 31), 4.0) for t in tickers[::10]),
        dividends=tuple(
            Dividend(t, day, 0.05)
            for t in tickers[::5]
            for day in (dt.date(2019, 3, 15), dt.date(2019, 6, 14), dt.date(2019, 9, 13))
        ),
    )
    t0 = time.perf_counter()
    frame = collect_prices(source, tickers, FIRST, LAST).frame
    print(f"state {HOME}")
    print(
        f"generated {len(frame):,} rows in {time.perf_counter() - t0:.1f} s "
        f"(peak RSS so far {rss_mib():.0f} MiB)"
    )
    window = Slice("trade_date", start=FIRST, end=LAST + dt.timedelta(days=1))
    db = PostgresResource()
    with db.connect() as conn:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS raw_prices, corporate_actions CASCADE")
        conn.commit()
        times = []
        for attempt in ("first write", "rerun (replace)"):
            t0 = time.perf_counter()
            write(conn, frame, window)
            times.append(time.perf_counter() - t0)
            count = query_frame(conn, "SELECT count(*) AS n FROM raw_prices")["n"].iloc[0]
            print(
                f"ingestion write {attempt:<16}{times[-1]:7.2f} s  "
                f"{len(frame) / times[-1]:>10,.0f} rows/s  rows in table {count:,}"
            )
        bars, _ = split_collected(frame)
        with conn.cursor() as cur:
            columns = table_columns(cur, RAW_PRICES.name)
        payload = _to_csv(bars, columns).getvalue()  # pre-serialized: not timed
        with conn.cursor() as cur:
            t0 = time.perf_counter()
            cur.execute("DELETE FROM raw_prices")
            cur.copy_expert("COPY raw_prices FROM STDIN WITH (FORMAT csv)", io.BytesIO(payload))
            conn.commit()
            raw = time.perf_counter() - t0
        print(f"raw DELETE + COPY              {raw:7.2f} s  {len(frame) / raw:>10,.0f} rows/s")
        best = min(times[1:])
        print(f"write throughput / raw COPY: {raw / best:.0%} (target ≥ 50 %)")

        reads = {"raw SELECT": [], "adjusted (prices_until)": []}
        for _ in range(3):
            t0 = time.perf_counter()
            plain = query_frame(
                conn,
                "SELECT trade_date, ticker, open, high, low, close, volume FROM raw_prices "
                "WHERE trade_date <= %s AND ticker = ANY(%s) ORDER BY ticker, trade_date",
                (LAST, list(tickers)),
            )
            reads["raw SELECT"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            adjusted = prices_until(conn, tickers, LAST)
            reads["adjusted (prices_until)"].append(time.perf_counter() - t0)
        assert len(plain) == len(adjusted) == len(frame)
        for name, secs in reads.items():
            print(f"read {name:<26}{min(secs):7.2f} s  {len(frame) / min(secs):>10,.0f} rows/s")
        ratio = min(reads["raw SELECT"]) / min(reads["adjusted (prices_until)"])
        print(f"adjusted read throughput / raw read: {ratio:.0%} (target ≥ 50 %)")
    print(f"peak RSS {rss_mib():.0f} MiB (target ≤ 2048 MiB)")


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_own_server()
