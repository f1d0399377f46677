"""Read-only access to the `stocks` database through a pooled asyncpg connection pool.

Every session the pool opens is read-only (`default_transaction_read_only`), so no code path of
the API can write, whatever a query says. Connection-level failures become `DatabaseUnavailable`
(the API answers 503); every other database error is left alone and ends as a logged 500.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from stock_assets.storage import schema
from stock_assets.storage.schema import WRITES_CHANNEL

# Errors that say "the database cannot be used right now", not "this query is wrong".
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # bad role or password
    asyncpg.exceptions.InvalidCatalogNameError,  # no such database
    asyncpg.exceptions.TooManyConnectionsError,
)

LISTEN_RETRY_SECONDS = 5.0
# Each ticker's newest prediction as index lookups on (ticker, as_of_date): walk the distinct
# tickers (a loose index scan), then take each one's newest row. A DISTINCT ON over every
# prediction read the whole table (0.5 s for 500 tickers × a year).
NEWEST_PER_TICKER = """(
    WITH RECURSIVE t(ticker) AS (
        (SELECT ticker FROM daily_predictions ORDER BY ticker LIMIT 1)
        UNION ALL
        SELECT (SELECT d.ticker FROM daily_predictions d WHERE d.ticker > t.ticker
                ORDER BY d.ticker LIMIT 1)
        FROM t WHERE t.ticker IS NOT NULL
    )
    SELECT newest.* FROM t CROSS JOIN LATERAL (
        SELECT * FROM daily_predictions d WHERE d.ticker = t.ticker
        ORDER BY d.as_of_date DESC LIMIT 1
    ) newest
) p"""
# the naive baseline's own 80 % interval, over the rows that carry one (NULL in older rows)
NAIVE_SCORES = """
    avg(naive_interval_hit::int) AS naive_coverage_80,
    100 * avg(ln(naive_upper / naive_lower)
        + 10 * (greatest(ln(naive_lower / actual_close), 0)
        + greatest(ln(actual_close / naive_upper), 0))) AS naive_interval_score_pct
"""
NO_NAIVE = "NULL::float8 AS naive_coverage_80, NULL::float8 AS naive_interval_score_pct"
# what an answer shows of a prediction row: every stored column but the write time
PREDICTION_COLUMNS = ", ".join(
    "p.model_version::text AS model_version" if c == "model_version" else f"p.{c}"
    for c in schema.PREDICTION_COLUMNS
    if c != "created_at" and c not in dict(schema.NAIVE_INTERVAL_COLUMNS)
)


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached, or refuses the API's connections."""


class NotMaterialized(LookupError):
    """A table the request needs has never been written: its asset was never materialized."""

    def __init__(self, table: str) -> None:
        super().__init__(f"table {table!r} does not exist yet: materialize its asset first")
        self.table = table


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def asyncpg_dsn(url: str) -> str:
    """asyncpg takes libpq URLs, but not SQLAlchemy's `postgresql+driver://` spelling."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith(("postgresql", "postgres")):
        raise ValueError(f"not a postgresql:// URL: {scheme}://…")
    return "postgresql://" + rest


class Database:
    """A lazily opened pool: the API starts, and answers 503, while the database is down."""

    def __init__(
        self,
        url: str,
        *,
        max_size: int = 8,
        timeout: float = 5.0,
        statement_timeout_ms: int = 15_000,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        parts = urlsplit(self._dsn)
        self._where = f"{parts.hostname or 'local socket'}:{parts.port or 5432}{parts.path}"
        self._max_size = max_size
        self._timeout = timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self._listener: asyncpg.Connection | None = None
        self._listen_lock = asyncio.Lock()
        self._listen_retry_at = 0.0
        self._epoch = 0
        self._notified = 0

    async def _ensure_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=1,
                    max_size=self._max_size,
                    timeout=self._timeout,
                    command_timeout=self._statement_timeout_ms / 1000 + 5,
                    init=_init_connection,
                    server_settings={
                        "application_name": "stock_assets_api",
                        "default_transaction_read_only": "on",
                        "statement_timeout": str(self._statement_timeout_ms),
                    },
                )
        return self._pool

    async def close(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            pool = await self._ensure_pool()
            async with pool.acquire(timeout=self._timeout) as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(  # for the log; clients get "database unavailable"
                f"the stocks database at {self._where} is unavailable: "
                f"{type(exc).__name__}: {exc}".rstrip(": ")
            ) from exc

    # --- change detection ----------------------------------------------------------------------

    async def version(self) -> Hashable | None:
        """The cache key of everything stored: which writes have happened.

        While a LISTEN connection is up, writers' notifications keep it in memory (no query per
        request); otherwise it is read from `table_writes`, one tiny query.
        """
        if self._listener is None or self._listener.is_closed():
            await self._try_listen()
        if self._listener is not None and not self._listener.is_closed():
            return ("notified", self._epoch, self._notified)
        return await self.write_counters()

    async def _try_listen(self) -> None:
        if self._listen_lock.locked() or time.monotonic() < self._listen_retry_at:
            return
        async with self._listen_lock:
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=self._timeout,
                    server_settings={"application_name": "stock_assets_api_listener"},
                )
                await conn.add_listener(WRITES_CHANNEL, self._on_write)
            except (*_UNAVAILABLE, asyncpg.PostgresError):
                self._listen_retry_at = time.monotonic() + LISTEN_RETRY_SECONDS
                return
            conn.add_termination_listener(self._on_listener_lost)
            self._listener = conn
            self._epoch += 1  # writes may have happened while nobody listened

    def _on_write(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._notified += 1

    def _on_listener_lost(self, conn: Any) -> None:
        self._listener = None

    # --- queries -------------------------------------------------------------------------------

    async def write_counters(self) -> tuple[tuple[str, int], ...] | None:
        """The IO manager's per-table write counters; None before the first write."""
        async with self.connection() as conn:
            try:
                rows = await conn.fetch("SELECT table_name, writes FROM table_writes")
            except asyncpg.UndefinedTableError:
                return None
        return tuple(sorted((r["table_name"], r["writes"]) for r in rows))

    async def tables(self) -> set[str]:
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')"
            )
        return {r["relname"] for r in rows}

    async def has_column(self, table: str, column: str) -> bool:
        """Whether a table has a column yet (tables of older states gain some on a write)."""
        async with self.connection() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE "
                    "table_schema = 'public' AND table_name = $1 AND column_name = $2)",
                    table,
                    column,
                )
            )

    async def _require(self, *names: str) -> set[str]:
        present = await self.tables()
        for name in names:
            if name not in present:
                raise NotMaterialized(name)
        return present

    async def newest_partitions(self) -> dict[str, dt.date | None]:
        present = await self.tables()
        out: dict[str, dt.date | None] = {"raw": None, "as_of": None, "target": None}
        async with self.connection() as conn:
            if "raw_prices" in present:
                out["raw"] = await conn.fetchval("SELECT max(trade_date) FROM raw_prices")
            if "daily_predictions" in present:
                row = await conn.fetchrow(
                    "SELECT max(as_of_date) AS as_of, max(target_date) AS target "
                    "FROM daily_predictions"
                )
                out["as_of"], out["target"] = row["as_of"], row["target"]
        return out

    async def missing_tickers(self, day: dt.date | None) -> list[dict[str, Any]]:
        """Configured tickers the ingest recorded no row for on `day` (which, why)."""
        if day is None or "raw_prices_missing" not in await self.tables():
            return []
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT ticker, trade_date, reason FROM raw_prices_missing "
                "WHERE trade_date = $1 ORDER BY ticker",
                day,
            )
        return [dict(r) for r in rows]

    async def has_prices(self, ticker: str) -> bool:
        """Stops at the ticker's first row. An unknown ticker costs PostgreSQL 18 a skip scan of
        the (trade_date, ticker) key (0.3 ms at a year × 500 tickers); older servers, such as
        compose's 17, scan the table for it."""
        await self._require("raw_prices")
        async with self.connection() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM raw_prices WHERE ticker = $1)", ticker
                )
            )

    async def tickers(self) -> list[dict[str, Any]]:
        await self._require("raw_prices")
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT ticker, min(trade_date) AS first_session, max(trade_date) AS last_session, "
                "count(*) AS sessions FROM raw_prices GROUP BY ticker ORDER BY ticker"
            )
        return [dict(r) for r in rows]

    async def _predictions(
        self,
        where: str,
        args: Sequence[Any],
        order: str,
        limit: str = "",
        source: str = "daily_predictions p",
    ) -> list[dict[str, Any]]:
        present = await self._require("daily_predictions")
        actual, join = "NULL::double precision AS actual_close", ""
        if "performance_log" in present:
            actual = "l.actual_close"
            join = (
                "LEFT JOIN performance_log l ON l.ticker = p.ticker "
                "AND l.as_of_date = p.as_of_date AND l.trade_date = p.target_date"
            )
        query = (
            f"SELECT {PREDICTION_COLUMNS}, {actual} FROM {source} {join} "
            f"WHERE {where} ORDER BY {order} {limit}"
        )
        async with self.connection() as conn:
            rows = await conn.fetch(query, *args)
        return [dict(r) for r in rows]

    async def latest_predictions(self, ticker: str | None = None) -> list[dict[str, Any]]:
        """Each ticker's newest prediction (tickers whose feed stopped keep their last one)."""
        if ticker is None:
            return await self._predictions("TRUE", (), "p.ticker", source=NEWEST_PER_TICKER)
        return await self._predictions(
            "p.ticker = $1", (ticker,), "p.as_of_date DESC", limit="LIMIT 1"
        )

    async def predictions_for_target(self, target: dt.date) -> list[dict[str, Any]]:
        return await self._predictions("p.target_date = $1", (target,), "p.ticker, p.as_of_date")

    async def prediction(self, ticker: str, as_of: dt.date) -> dict[str, Any] | None:
        rows = await self._predictions(
            "p.ticker = $1 AND p.as_of_date = $2", (ticker, as_of), "p.as_of_date"
        )
        return rows[0] if rows else None

    async def prediction_history(
        self, ticker: str, start: dt.date, end: dt.date, offset: int, limit: int
    ) -> tuple[int, list[dict[str, Any]]]:
        rows = await self._predictions(  # checks that the table exists
            "p.ticker = $1 AND p.as_of_date BETWEEN $2 AND $3",
            (ticker, start, end),
            "p.as_of_date",
            limit=f"LIMIT {int(limit)} OFFSET {int(offset)}",
        )
        async with self.connection() as conn:
            total = await conn.fetchval(
                "SELECT count(*) FROM daily_predictions "
                "WHERE ticker = $1 AND as_of_date BETWEEN $2 AND $3",
                ticker,
                start,
                end,
            )
        return int(total), rows

    async def newest_as_of(self, ticker: str) -> dt.date | None:
        await self._require("daily_predictions")
        async with self.connection() as conn:
            return await conn.fetchval(
                "SELECT max(as_of_date) FROM daily_predictions WHERE ticker = $1", ticker
            )

    async def prices(
        self, ticker: str, start: dt.date, end: dt.date, adjusted: bool = False
    ) -> list[dict[str, Any]]:
        table = "adjusted_prices" if adjusted else "raw_prices"
        await self._require(table)
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT trade_date, open, high, low, close, volume::double precision AS volume "
                f"FROM {table} WHERE ticker = $1 AND trade_date BETWEEN $2 AND $3 "
                "ORDER BY trade_date",
                ticker,
                start,
                end,
            )
        return [dict(r) for r in rows]

    async def raw_span(self, ticker: str, until: dt.date) -> dict[str, Any]:
        await self._require("raw_prices")
        async with self.connection() as conn:
            row = await conn.fetchrow(
                "SELECT min(trade_date) AS first, max(trade_date) AS last, count(*) AS count "
                "FROM raw_prices WHERE ticker = $1 AND trade_date <= $2",
                ticker,
                until,
            )
        return dict(row)

    async def performance(self, window: int, ticker: str | None) -> list[dict[str, Any]]:
        """Out-of-sample scores over the newest `window` scored sessions: per ticker, and overall
        (the row whose ticker is NULL)."""
        await self._require("performance_log")
        naive = (
            NAIVE_SCORES if await self.has_column("performance_log", "naive_lower") else NO_NAIVE
        )
        only = "AND ticker = $2" if ticker else ""
        args: tuple[Any, ...] = (window, ticker) if ticker else (window,)
        query = f"""
            WITH sessions AS (
                SELECT DISTINCT trade_date FROM performance_log
                WHERE NOT in_sample {only} ORDER BY trade_date DESC LIMIT $1
            )
            SELECT ticker, count(*) AS predictions, min(trade_date) AS first_session,
                   max(trade_date) AS last_session, avg(abs_error) AS mae,
                   avg(pct_error) AS mape_pct, avg(naive_abs_error) AS naive_mae,
                   avg(direction_hit::int) AS direction_accuracy,
                   avg(interval_hit::int) AS coverage_80,
                   100 * avg(ln(upper / lower) + 10 * (greatest(ln(lower / actual_close), 0)
                       + greatest(ln(actual_close / upper), 0))) AS interval_score_pct,
                   avg((actual_close > last_close)::int) AS always_up_direction_accuracy,
                   {naive}
            FROM performance_log
            WHERE NOT in_sample {only} AND trade_date IN (SELECT trade_date FROM sessions)
            GROUP BY GROUPING SETS ((ticker), ())
            ORDER BY ticker NULLS FIRST
        """
        async with self.connection() as conn:
            rows = await conn.fetch(query, *args)
        return [dict(r) for r in rows]

    async def promotions(self, model_name: str) -> list[dict[str, Any]]:
        await self._require("model_promotions")
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT promoted_at, model_name, previous_version, new_version, dataset_run_id, "
                "reason, action, actor FROM model_promotions "
                "WHERE model_name = $1 AND status = 'done' ORDER BY id",
                model_name,
            )
        return [dict(r) for r in rows]

    async def promotion_of(self, model_name: str, version: str) -> dict[str, Any] | None:
        present = await self.tables()
        if "model_promotions" not in present:
            return None
        async with self.connection() as conn:
            row = await conn.fetchrow(
                "SELECT promoted_at, reason, metrics FROM model_promotions "
                "WHERE model_name = $1 AND new_version = $2 AND status = 'done' "
                "ORDER BY id DESC LIMIT 1",
                model_name,
                version,
            )
            candidate = None
            if "candidate_model" in present:
                candidate = await conn.fetchrow(
                    "SELECT metrics FROM candidate_model "
                    "WHERE model_name = $1 AND model_version::text = $2",
                    model_name,
                    version,
                )
        out = dict(row) if row else {}
        if candidate is not None:
            out["candidate_metrics"] = candidate["metrics"]
        return out or None

    async def dataset_run(self, key: str) -> dict[str, Any] | None:
        present = await self.tables()
        if "dataset_runs" not in present:
            return None
        async with self.connection() as conn:
            row = await conn.fetchrow(
                "SELECT dataset_run_id, cutoff, reason, created_at FROM dataset_runs "
                "WHERE dataset_run_id = $1",
                key,
            )
        return dict(row) if row else None
