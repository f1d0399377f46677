"""Reads of prices: as traded (what raw_prices stores) and adjusted point in time (what
features, targets, naive baselines, scoring and the promotion check read)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from stock_assets.market.adjust import adjust, empty_actions
from stock_assets.market.ingest import BAR_COLUMNS
from stock_assets.storage.schema import (
    ADJUSTED_PRICES_VIEW,
    CORPORATE_ACTIONS,
    CORPORATE_ACTIONS_DDL,
    PRICE_COLUMNS,
    RAW_PRICES,
    RAW_PRICES_MISSING,
    RAW_PRICES_MISSING_DDL,
    RAW_PRICES_REJECTED,
    RAW_PRICES_REJECTED_DDL,
)
from stock_assets.storage.writer import copy_frame, query_frame, table_exists

TABLE = RAW_PRICES.name
BAR_TYPES = {
    "trade_date": "DATE",
    "ticker": "TEXT",
    **{c: "DOUBLE PRECISION" for c in ("open", "high", "low", "close", "volume")},
}


def last_rows_before(conn: Any, day: dt.date, tickers: Sequence[str]) -> pd.DataFrame:
    """Each ticker's last stored row before `day` (as traded): yesterday for a one-day run's
    jump check."""
    cols = ["trade_date", "ticker", "close"]
    if not table_exists(conn, TABLE):
        return pd.DataFrame(columns=cols)
    return query_frame(
        conn,
        f"SELECT DISTINCT ON (ticker) trade_date, ticker, close FROM {TABLE} "
        "WHERE trade_date < %s AND ticker = ANY(%s) ORDER BY ticker, trade_date DESC",
        (day, list(tickers)),
    )


def stored_bars(conn: Any, tickers: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
    """Stored rows (as traded) of `tickers` in [start, end]."""
    if not table_exists(conn, TABLE):
        return pd.DataFrame(columns=list(BAR_COLUMNS))
    return query_frame(
        conn,
        f"SELECT {', '.join(BAR_COLUMNS)} FROM {TABLE} WHERE trade_date BETWEEN %s AND %s "
        "AND ticker = ANY(%s) ORDER BY ticker, trade_date",
        (start, end, list(tickers)),
    )


def last_sessions_before(conn: Any, day: dt.date, n: int) -> list[dt.date]:
    """The `n` newest stored sessions before `day`, oldest first."""
    if n <= 0 or not table_exists(conn, TABLE):
        return []
    rows = query_frame(
        conn,
        f"SELECT DISTINCT trade_date FROM {TABLE} WHERE trade_date < %s "
        "ORDER BY trade_date DESC LIMIT %s",
        (day, n),
    )
    return sorted(rows["trade_date"])


def stored_keys(
    conn: Any, tickers: Sequence[str], span: tuple[dt.date, dt.date] | None = None
) -> pd.DataFrame:
    """(trade_date, ticker) of every stored row of the configured tickers (in `span`)."""
    if not table_exists(conn, TABLE):
        return pd.DataFrame(columns=["trade_date", "ticker"])
    first, last = span or (dt.date.min, dt.date.max)
    return query_frame(
        conn,
        f"SELECT trade_date, ticker FROM {TABLE} WHERE ticker = ANY(%s) "
        "AND trade_date BETWEEN %s AND %s",
        (list(tickers), first, last),
    )


def stored_span(conn: Any) -> tuple[dt.date, dt.date] | None:
    """First and last stored trade_date over all tickers."""
    if not table_exists(conn, TABLE):
        return None
    with conn.cursor() as cur:
        cur.execute(f"SELECT min(trade_date), max(trade_date) FROM {TABLE}")
        first, last = cur.fetchone()
    conn.rollback()
    return None if first is None else (first, last)


def actions_until(conn: Any, tickers: Sequence[str], as_of: dt.date) -> pd.DataFrame:
    """Corporate actions of `tickers` with ex-dates up to `as_of`: those known as of that day."""
    if not table_exists(conn, CORPORATE_ACTIONS.name):
        return empty_actions()
    return query_frame(
        conn,
        "SELECT trade_date, ticker, split_ratio, dividend FROM corporate_actions "
        "WHERE trade_date <= %s AND ticker = ANY(%s) ORDER BY ticker, trade_date",
        (as_of, list(tickers)),
    )


def prices_until(
    conn: Any, tickers: Sequence[str], cutoff: dt.date, since: dt.date | None = None, rows: int = 0
) -> pd.DataFrame:
    """Stored rows of `tickers` up to and including `cutoff`, adjusted with the actions known as
    of `cutoff` (so later actions change nothing here).

    From each ticker's first row, or with `rows`, from its `rows`-th newest row before `since`
    (default `cutoff`) on: serving reads a bounded tail, not twenty years. The tail's prices are
    those of the full read (an action before the tail scales no row in it).
    """
    if not table_exists(conn, TABLE):
        raise LookupError("raw_prices is empty: materialize it first")
    cols = ", ".join(f"p.{c}" for c in BAR_COLUMNS)
    if rows:
        raw = copy_frame(
            conn,
            f"SELECT {cols} FROM unnest(%s::text[]) AS t(ticker) "
            f"CROSS JOIN LATERAL (SELECT coalesce(min(trade_date), '-infinity') AS first "
            f"FROM (SELECT trade_date FROM {TABLE} WHERE ticker = t.ticker AND trade_date < %s "
            "ORDER BY trade_date DESC LIMIT %s) AS newest) AS tail "
            f"JOIN {TABLE} AS p ON p.ticker = t.ticker AND p.trade_date >= tail.first "
            "AND p.trade_date <= %s ORDER BY p.ticker, p.trade_date",
            (list(tickers), since or cutoff, rows, cutoff),
            BAR_TYPES,
        )
    else:
        raw = copy_frame(
            conn,
            f"SELECT {cols} FROM {TABLE} AS p WHERE p.trade_date <= %s "
            "AND p.ticker = ANY(%s) ORDER BY p.ticker, p.trade_date",
            (cutoff, list(tickers)),
            BAR_TYPES,
        )
    actions = actions_until(conn, tickers, cutoff)
    if rows and len(actions):  # those before a ticker's tail scale none of its rows
        first = raw.groupby("ticker")["trade_date"].min()
        actions = actions[actions["trade_date"] >= actions["ticker"].map(first)]
        actions = actions.reset_index(drop=True)
    frame = adjust(raw, actions)
    frame["adj_close"] = frame["close"]
    return frame[list(PRICE_COLUMNS)]


def ensure_adjusted_view(conn: Any) -> bool:
    """Create `adjusted_prices` (and an empty corporate_actions) once raw_prices exists."""
    if not table_exists(conn, TABLE):
        return False
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('adjusted_prices') IS NOT NULL")
        if cur.fetchone()[0]:  # no DDL (and no lock) on every write once it exists
            conn.rollback()
            return True
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('stock_assets.adjusted_prices'))")
        cur.execute(CORPORATE_ACTIONS_DDL)
        cur.execute(ADJUSTED_PRICES_VIEW)
    conn.commit()
    return True


def replace_ticker_days(
    conn: Any, ticker: str, days: Sequence[dt.date], bars: pd.DataFrame, actions: pd.DataFrame
) -> int:
    """Replace one ticker's raw_prices and corporate_actions rows, one transaction per day
    (per trading_days partition): a failure leaves every day all old or all new."""
    from stock_assets.storage.writer import note_write

    ensure_adjusted_view(conn)
    bar_cols = list(bars.columns)
    act_cols = list(actions.columns)
    bars_by_day = {d: rows for d, rows in bars.groupby("trade_date")}
    acts_by_day = {d: rows for d, rows in actions.groupby("trade_date")}
    written = 0
    for day in days:
        with conn.cursor() as cur:
            for table, cols, rows in (
                (TABLE, bar_cols, bars_by_day.get(day)),
                (CORPORATE_ACTIONS.name, act_cols, acts_by_day.get(day)),
            ):
                cur.execute(
                    f"DELETE FROM {table} WHERE ticker = %s AND trade_date = %s", (ticker, day)
                )
                for row in [] if rows is None else rows.itertuples(index=False):
                    cur.execute(
                        f"INSERT INTO {table} ({', '.join(cols)}) "
                        f"VALUES ({', '.join(['%s'] * len(cols))})",
                        [v.item() if hasattr(v, "item") else v for v in row],
                    )
                    written += table == TABLE
                note_write(cur, table)
        conn.commit()
    return written


def write_ingest(
    conn: Any,
    first: dt.date,
    last: dt.date,
    bars: pd.DataFrame,
    actions: pd.DataFrame,
    rejected: pd.DataFrame,
    missing: pd.DataFrame,
    timeouts: Any = None,
) -> int:
    """Replace [first, last] of raw_prices, corporate_actions, raw_prices_rejected and
    raw_prices_missing in ONE transaction: a kill or crash leaves the run's days all old or all
    new in every table (stored bars are only readable with their days' actions). Returns bars."""
    from stock_assets.storage.writer import Slice, SliceWrite, replace_slices

    with conn.cursor() as cur:  # the side tables exist even when nothing is rejected or missing
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('stock_assets.raw_prices_gaps'))")
        cur.execute(RAW_PRICES_REJECTED_DDL)
        cur.execute(RAW_PRICES_MISSING_DDL)
    conn.commit()
    where = Slice("trade_date", start=first, end=last + dt.timedelta(days=1))
    replace_slices(
        conn,
        [
            SliceWrite(TABLE, bars, where, RAW_PRICES.primary_key, indexes=RAW_PRICES.indexes),
            SliceWrite(CORPORATE_ACTIONS.name, actions, where, CORPORATE_ACTIONS.primary_key),
            SliceWrite(RAW_PRICES_REJECTED.name, rejected, where),
            SliceWrite(RAW_PRICES_MISSING.name, missing, where, RAW_PRICES_MISSING.primary_key),
        ],
        timeouts,
    )
    ensure_adjusted_view(conn)
    if last > first:
        settle(conn, TABLE)
    return len(bars)


def settle(conn: Any, table: str) -> None:
    """VACUUM (ANALYZE) after a range was written: until autovacuum gets to it, a freshly
    loaded table has no statistics and no visibility map, so the next serving read fetches
    every row from the heap (0.6 s of the first daily cycle after a 500-ticker backfill). Daily
    one-session writes leave it to autovacuum. Best effort: a role that may not vacuum, or a
    connection used as `with psycopg2.connect(...) as conn` (always in a transaction, where
    VACUUM cannot run), only waits for autovacuum."""
    import psycopg2
    from psycopg2 import sql

    conn.rollback()
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
    except psycopg2.Error:
        pass
    finally:
        conn.rollback()  # the failed statement's transaction, if the connection opened one
        conn.autocommit = autocommit


def missing_since(conn: Any, since: dt.date) -> pd.DataFrame:
    """The recorded (session, ticker) gaps from `since` on, newest first."""
    if not table_exists(conn, RAW_PRICES_MISSING.name):
        return pd.DataFrame(columns=["trade_date", "ticker", "reason"])
    return query_frame(
        conn,
        f"SELECT trade_date, ticker, reason FROM {RAW_PRICES_MISSING.name} "
        "WHERE trade_date >= %s ORDER BY trade_date DESC, ticker",
        (since,),
    )


def stored_rows_at(
    conn: Any, keys: pd.DataFrame, first: dt.date, last: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored raw_prices and corporate_actions rows of (trade_date, ticker) `keys` in
    [first, last], typed like collected ones: a rerun that cannot replace them keeps them."""
    bar_cols = [*BAR_COLUMNS, "source", "ingested_at"]
    act_cols = ["trade_date", "ticker", "split_ratio", "dividend", "source", "known_at"]
    if keys.empty or not table_exists(conn, TABLE):
        return pd.DataFrame(columns=bar_cols), pd.DataFrame(columns=act_cols)
    tickers = sorted(set(keys["ticker"]))
    window = "WHERE trade_date BETWEEN %s AND %s AND ticker = ANY(%s)"
    bars = query_frame(
        conn, f"SELECT {', '.join(bar_cols)} FROM {TABLE} {window}", (first, last, tickers)
    )
    actions = pd.DataFrame(columns=act_cols)
    if table_exists(conn, CORPORATE_ACTIONS.name):
        actions = query_frame(
            conn,
            f"SELECT {', '.join(act_cols)} FROM {CORPORATE_ACTIONS.name} {window}",
            (first, last, tickers),
        )
    wanted = pd.MultiIndex.from_frame(keys[["trade_date", "ticker"]])
    bars = bars[pd.MultiIndex.from_frame(bars[["trade_date", "ticker"]]).isin(wanted)]
    actions = actions[pd.MultiIndex.from_frame(actions[["trade_date", "ticker"]]).isin(wanted)]
    for col in ("open", "high", "low", "close"):
        bars[col] = bars[col].astype("float64")
    bars["volume"] = bars["volume"].astype("Int64")
    bars["ingested_at"] = pd.to_datetime(bars["ingested_at"], utc=True)
    for col in ("split_ratio", "dividend"):
        actions[col] = actions[col].astype("float64")
    actions["known_at"] = pd.to_datetime(actions["known_at"], utc=True)
    return bars.reset_index(drop=True), actions.reset_index(drop=True)
