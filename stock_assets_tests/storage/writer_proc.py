"""A writer in its own process, for the kill and race tests: `python -m ... URL TABLE ...`.

It prints `ready` once imported and connected, waits for a line on stdin (so the parent can
start several at once or time a kill from the start of the write), then replaces slices with
`replace_slice` and prints `done N` after each write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys

import numpy as np
import pandas as pd
import psycopg2

from stock_assets.storage.writer import Slice, Timeouts, replace_slice

DAY0 = dt.date(2024, 1, 1)
APPLICATION = "writer_proc"  # the parent waits for the server to end a killed writer's session


def rows(first_day: int, last_day: int, tickers: int, writer: str, version: int) -> pd.DataFrame:
    """Every (day, ticker) key of days [first_day, last_day), tagged with who wrote it."""
    days = [DAY0 + dt.timedelta(days=d) for d in range(first_day, last_day)]
    n = len(days) * tickers
    return pd.DataFrame(
        {
            "trade_date": np.repeat(np.array(days, dtype=object), tickers),
            "ticker": np.tile(
                np.array([f"T{i:05d}" for i in range(tickers)], dtype=object), len(days)
            ),
            "value": np.arange(n, dtype="float64") + version,
            "writer": writer,
            "version": np.full(n, version, dtype="int64"),
        }
    )


def day_slice(first_day: int, last_day: int) -> Slice:
    return Slice(
        "trade_date",
        start=DAY0 + dt.timedelta(days=first_day),
        end=DAY0 + dt.timedelta(days=last_day),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("table")
    parser.add_argument("--writer", default="A")
    parser.add_argument("--days", type=int, nargs=2, required=True)  # [first, last)
    parser.add_argument("--tickers", type=int, default=50)
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--jitter", type=float, default=0.0)  # random sleep between writes
    args = parser.parse_args()
    conn = psycopg2.connect(args.url, application_name=APPLICATION)
    frames = [
        rows(*args.days, args.tickers, args.writer, args.version + i) for i in range(args.repeat)
    ]
    print("ready", flush=True)
    sys.stdin.readline()
    for i, frame in enumerate(frames):
        replace_slice(conn, args.table, frame, day_slice(*args.days), timeouts=Timeouts(lock=60))
        print(f"done {i}", flush=True)
        if args.jitter:
            import time

            time.sleep(random.uniform(0, args.jitter))
    conn.close()


if __name__ == "__main__":
    main()
