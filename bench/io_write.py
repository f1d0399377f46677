"""(b) The IO manager's write path on `synthetic`, 500 tickers × 10 years (≈1.26 M rows).

Compares replace_slice (what the IO manager runs: slice check, Arrow CSV, DELETE + COPY in one
transaction) with a raw COPY of the same rows, pre-serialized, into the same table. Targets:
throughput ≥ 50 % of raw COPY, peak RSS ≤ 2 GiB, a rerun keeps the row count.
"""

import datetime as dt
import io
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import bench_home

HOME = bench_home("io")

from stock_assets.defs.resources import PostgresResource  # noqa: E402
from stock_assets.market.ingest import collect_prices  # noqa: E402
from stock_assets.market.sources import SyntheticSource  # noqa: E402
from stock_assets.runtime.state import prepare  # noqa: E402
from stock_assets.settings import load_settings  # noqa: E402
from stock_assets.storage.writer import Slice, _to_csv, replace_slice, table_columns  # noqa: E402

TABLE = "raw_prices_bench"
FIRST, LAST = dt.date(2015, 1, 2), dt.date(2024, 12, 31)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    prepare(load_settings())
    source = SyntheticSource(seed=1, n_tickers=500, start=FIRST, end=LAST)
    t0 = time.perf_counter()
    frame = collect_prices(source, source.default_tickers, FIRST, LAST)
    print(f"state {HOME}")
    print(
        f"generated {len(frame):,} rows in {time.perf_counter() - t0:.1f} s "
        f"(peak RSS so far {rss_mib():.0f} MiB)"
    )
    window = Slice("trade_date", start=FIRST, end=LAST + dt.timedelta(days=1))
    db = PostgresResource()
    with db.connect() as conn:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.commit()
        times = []
        for attempt in ("first write", "rerun (replace)"):
            t0 = time.perf_counter()
            replace_slice(conn, TABLE, frame, window, ["trade_date", "ticker"])
            times.append(time.perf_counter() - t0)
            with conn.cursor() as cur:
                cur.execute(f"SELECT count(*) FROM {TABLE}")
                count = cur.fetchone()[0]
            conn.rollback()
            print(
                f"IO manager {attempt:<16}{times[-1]:7.2f} s  "
                f"{len(frame) / times[-1]:>10,.0f} rows/s"
                f"  rows in table {count:,}"
            )
        with conn.cursor() as cur:
            columns = table_columns(cur, TABLE)
        payload = _to_csv(frame, columns).getvalue()  # pre-serialized: not timed
        with conn.cursor() as cur:
            t0 = time.perf_counter()
            cur.execute(f"DELETE FROM {TABLE}")
            cur.copy_expert(f"COPY {TABLE} FROM STDIN WITH (FORMAT csv)", io.BytesIO(payload))
            conn.commit()
            raw = time.perf_counter() - t0
        print(f"raw DELETE + COPY         {raw:7.2f} s  {len(frame) / raw:>10,.0f} rows/s")
    best = min(times[1:])
    print(f"IO manager rerun throughput / raw COPY: {raw / best:.0%} (target ≥ 50 %)")
    print(f"peak RSS {rss_mib():.0f} MiB (target ≤ 2048 MiB)")


if __name__ == "__main__":
    main()
