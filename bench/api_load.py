"""API throughput and latency under load, next to a bare FastAPI endpoint serving the same bytes.

Set-up: a scratch state (embedded Postgres in a temporary folder) whose tables are written through
the IO manager's own `replace_slice`: raw_prices, daily_predictions and performance_log for 500
(BENCH_API_TICKERS) synthetic tickers over one year (252 sessions). Then the real API app and
the bare app (bench/bare_api.py) are served the same way — uvicorn, uvloop + httptools, one
process, no access log — and `wrk` (Debian) sends a fixed number of requests at 8 and at 64
connections to:

- latest predictions of every ticker (`/predictions/latest`), and
- one ticker's year of predictions (`/tickers/SYN0250/predictions?page_size=300`).

Targets: ≥ 50 % of the bare endpoint's requests/s at both concurrencies; p99 ≤ 50 ms at 8
connections for latest predictions.
"""

import datetime as dt
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
LUA = HERE / "wrk_fixed.lua"
TICKERS = int(os.environ.get("BENCH_API_TICKERS", "500"))  # 5000: `make bench-scale`
REQUESTS = int(os.environ.get("BENCH_API_REQUESTS", "4000"))
ENDPOINTS = {
    f"latest predictions ({TICKERS} tickers)": "/predictions/latest",
    "one ticker's history (252 rows)": "/tickers/SYN0250/predictions?page_size=300",
}
CONNECTIONS = (8, 64)
MISS_TARGETS_MS = {  # issue 16
    f"latest predictions ({TICKERS} tickers)": 30 if TICKERS <= 500 else 150,
    "one ticker's history (252 rows)": 15,
}


def _fill(url: str) -> None:
    """One year of prices, predictions and scores for TICKERS tickers, written as the platform
    does."""
    import psycopg2

    from stock_assets.lifecycle.scoring import score
    from stock_assets.market.calendars import sessions_between
    from stock_assets.storage.schema import DAILY_PREDICTIONS
    from stock_assets.storage.writer import Slice, replace_slice

    days = sessions_between(dt.date(2019, 1, 2), dt.date(2019, 12, 31))
    rng = np.random.default_rng(5)
    tickers = [f"SYN{i:04d}" for i in range(TICKERS)]
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (len(days), TICKERS)), axis=0))
    grid = pd.MultiIndex.from_product([days, tickers], names=["trade_date", "ticker"])
    close = closes.reshape(-1)
    raw = pd.DataFrame(
        {
            "open": close * 0.999,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": rng.integers(1_000_000, 9_000_000, close.size),
            "source": "bench",
            "ingested_at": pd.Timestamp("2020-01-02", tz="UTC"),
        },
        index=grid,
    ).reset_index()
    predicted = close * (1 + rng.normal(0, 0.003, close.size))
    targets = dict(itertools.pairwise(days))
    targets[days[-1]] = dt.date(2020, 1, 2)
    predictions = pd.DataFrame(
        {
            "as_of_date": raw["trade_date"],
            "target_date": raw["trade_date"].map(targets),
            "ticker": raw["ticker"],
            "last_close": close,
            "predicted_close": predicted,
            "lower": predicted * 0.98,
            "upper": predicted * 1.02,
            "predicted_return": predicted / close - 1,
            "model_name": "bench_forecaster",
            "model_version": "1",
            "mlflow_run_id": "0" * 32,
            "dataset_run_id": "2018-12-31",
            "in_sample": False,
            "created_at": pd.Timestamp("2020-01-02", tz="UTC"),
            "served_by": "model",
            "naive_lower": close * 0.98,
            "naive_upper": close * 1.02,
        }
    )
    scores = score(predictions, raw[["trade_date", "ticker", "close"]])
    conn = psycopg2.connect(url)
    try:
        replace_slice(conn, "raw_prices", raw, Slice(), primary_key=["trade_date", "ticker"])
        replace_slice(  # as the IO manager writes it: the declared key and indexes
            conn,
            DAILY_PREDICTIONS.name,
            predictions,
            Slice(),
            primary_key=DAILY_PREDICTIONS.primary_key,
            indexes=DAILY_PREDICTIONS.indexes,
        )
        replace_slice(
            conn, "performance_log", scores, Slice(), primary_key=["trade_date", "ticker"]
        )
        with conn.cursor() as cur:
            cur.execute("ANALYZE")
        conn.commit()
    finally:
        conn.close()
    print(
        f"filled: {len(raw):,} price rows, {len(predictions):,} predictions, {len(scores):,} scores"
    )


def _serve(app: str, port: int, env: dict, log: Path) -> subprocess.Popen:
    args = [
        str(BIN / "uvicorn"),
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if app.startswith("api."):
        args.append("--factory")
    process = subprocess.Popen(
        args, env=env, cwd=HERE.parent, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2)
            return process
        except httpx.TransportError:
            if process.poll() is not None:
                raise RuntimeError(f"{app} exited:\n{log.read_text()}") from None
            time.sleep(0.2)
    raise RuntimeError(f"{app} did not start:\n{log.read_text()}")


def _wrk(url: str, connections: int, requests: int, seconds: float) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "-s", str(LUA), url],
        env={**os.environ, "WRK_REQUESTS": str(requests)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    if figures["non2xx"] or figures["socket_errors"]:
        raise RuntimeError(f"errors under load at {url}: {figures}")
    return figures


def _measure(url: str, connections: int) -> dict:
    """A 2 s warm-up (fills caches, estimates the rate), then exactly REQUESTS requests.

    wrk runs until its -d duration even after the script stops the thread, so the duration is
    sized from the warm-up; the rate is REQUESTS over the wall time the script measured.
    """
    warm = _wrk(url, connections, 10**9, 2)
    rate = warm["all_requests"] / (warm["duration_us"] / 1e6)
    figures = _wrk(url, connections, REQUESTS, math.ceil(REQUESTS / rate * 2) + 2)
    if figures["requests"] != REQUESTS:
        raise RuntimeError(f"{url}: only {figures['all_requests']} of {REQUESTS} requests ran")
    figures["rps"] = REQUESTS / figures["elapsed_s"]
    return figures


def _miss_ms(url: str, port: int, path: str, repeats: int = 15) -> list[float]:
    """Latency of a request that must rebuild its answer: each follows a (no-op) write."""
    import psycopg2

    from stock_assets.storage.writer import note_write

    out = []
    conn = psycopg2.connect(url)
    # one client, connection kept: a bare httpx.get builds a client (and an SSL context) per
    # call, about 35 ms that earlier figures counted as the API's
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        client.get(path).raise_for_status()
        for _ in range(repeats):
            with conn.cursor() as cur:
                note_write(cur, "bench_bump")
            conn.commit()
            time.sleep(0.05)  # the notification reaches the API
            started = time.perf_counter()
            client.get(path).raise_for_status()
            out.append((time.perf_counter() - started) * 1000)
    finally:
        client.close()
        conn.close()
    return out


def _hit_ms(port: int, path: str, repeats: int = 15) -> list[float]:
    """The same request answered from the cache, measured the same way."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        client.get(path).raise_for_status()
        out = []
        for _ in range(repeats):
            started = time.perf_counter()
            client.get(path).raise_for_status()
            out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    home = Path(tempfile.mkdtemp(prefix="bench_api_"))
    os.environ["STOCK_ASSETS_HOME"] = str(home)
    os.environ.pop("STOCK_ASSETS_POSTGRES_URL", None)
    from stock_assets.runtime.postgres import embedded_stop
    from stock_assets.runtime.state import prepare
    from stock_assets.settings import load_settings

    env = prepare(load_settings())
    processes = []
    try:
        _fill(env["STOCK_ASSETS_DB_URL"])
        api_port, bare_port = 18801, 18802
        api_env = {**os.environ, "STOCK_ASSETS_API_DB_URL": env["STOCK_ASSETS_DB_URL"]}
        processes.append(_serve("api.app:create_app", api_port, api_env, home / "api.log"))
        bodies = {}
        for path in ENDPOINTS.values():
            response = httpx.get(f"http://127.0.0.1:{api_port}{path}", timeout=60)
            response.raise_for_status()
            file = home / f"body{len(bodies)}.json"
            file.write_bytes(response.content)
            bodies[path] = str(file)
            print(f"{path}: {len(response.content):,} bytes")
        (home / "bodies.json").write_text(json.dumps(bodies))
        bare_env = {**os.environ, "BARE_BODIES": str(home / "bodies.json"), "PYTHONPATH": str(HERE)}
        processes.append(_serve("bare_api:app", bare_port, bare_env, home / "bare.log"))

        misses = {
            label: _miss_ms(env["STOCK_ASSETS_DB_URL"], api_port, path)
            for label, path in ENDPOINTS.items()
        }
        hits = {label: _hit_ms(api_port, path) for label, path in ENDPOINTS.items()}
        rows = []
        for label, path in ENDPOINTS.items():
            for connections in CONNECTIONS:
                figures = {}
                for who, port in (("api", api_port), ("bare", bare_port)):
                    figures[who] = _measure(f"http://127.0.0.1:{port}{path}", connections)
                rows.append((label, connections, figures))
        print(f"\n{REQUESTS:,} requests per measurement, wrk -t1, 2-core machine\n")
        head = "| endpoint | conns | API p50 ms | API p99 ms | API req/s | bare p50 ms "
        print(head + "| bare p99 ms | bare req/s | API / bare |")
        print("|---|---|---|---|---|---|---|---|---|")
        for label, connections, f in rows:
            a, b = f["api"], f["bare"]
            print(
                f"| {label} | {connections} | {a['p50_us'] / 1000:.2f} | {a['p99_us'] / 1000:.2f} "
                f"| {a['rps']:,.0f} | {b['p50_us'] / 1000:.2f} | {b['p99_us'] / 1000:.2f} "
                f"| {b['rps']:,.0f} | {a['rps'] / b['rps']:.0%} |"
            )
        print("\ncache misses (first request after a write), median / max of 15, next to hits:")
        for label, ms in misses.items():
            target = MISS_TARGETS_MS[label]
            print(
                f"  {label}: {statistics.median(ms):.1f} / {max(ms):.1f} ms "
                f"(target median ≤ {target} ms); hit {statistics.median(hits[label]):.1f} ms"
            )
        worst = min(f["api"]["rps"] / f["bare"]["rps"] for _, _, f in rows)
        latest_p99 = next(f["api"]["p99_us"] for lbl, c, f in rows if c == 8 and "latest" in lbl)
        print(f"\nlowest API/bare throughput: {worst:.0%} (target ≥ 50 %)")
        print(f"latest predictions p99 at 8 connections: {latest_p99 / 1000:.2f} ms (target ≤ 50)")
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        embedded_stop(load_settings().pgdata)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
