"""Queries over the stored raw_prices table that the ingestion checks need."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from stock_assets.storage.schema import PRICE_COLUMNS, RAW_PRICES
from stock_assets.storage.writer import table_columns

TABLE = RAW_PRICES.name


def last_rows_before(conn: Any, day: dt.date, tickers: Sequence[str]) -> pd.DataFrame:
    """Each ticker's last stored row before `day`: yesterday for a one-day run's jump check."""
    cols = ["trade_date", "ticker", "close", "adj_close"]
    with conn.cursor() as cur:
        if table_columns(cur, TABLE) is None:
            conn.rollback()
            return pd.DataFrame(columns=cols)
        cur.execute(
            f"""
            SELECT DISTINCT ON (ticker) trade_date, ticker, close, adj_close
            FROM {TABLE} WHERE trade_date < %s AND ticker = ANY(%s)
            ORDER BY ticker, trade_date DESC
            """,
            (day, list(tickers)),
        )
        rows = cur.fetchall()
    conn.rollback()
    return pd.DataFrame(rows, columns=cols)


def stored_keys(conn: Any, tickers: Sequence[str]) -> pd.DataFrame:
    """(trade_date, ticker) of every stored row of the configured tickers."""
    with conn.cursor() as cur:
        if table_columns(cur, TABLE) is None:
            conn.rollback()
            return pd.DataFrame(columns=["trade_date", "ticker"])
        cur.execute(
            f"SELECT trade_date, ticker FROM {TABLE} WHERE ticker = ANY(%s)", (list(tickers),)
        )
        rows = cur.fetchall()
    conn.rollback()
    return pd.DataFrame(rows, columns=["trade_date", "ticker"])


def stored_span(conn: Any) -> tuple[dt.date, dt.date] | None:
    """First and last stored trade_date over all tickers."""
    with conn.cursor() as cur:
        if table_columns(cur, TABLE) is None:
            conn.rollback()
            return None
        cur.execute(f"SELECT min(trade_date), max(trade_date) FROM {TABLE}")
        first, last = cur.fetchone()
    conn.rollback()
    return None if first is None else (first, last)


def prices_until(conn: Any, tickers: Sequence[str], cutoff: dt.date) -> pd.DataFrame:
    """Every stored row of `tickers` up to and including `cutoff`, from each ticker's first."""
    with conn.cursor() as cur:
        if table_columns(cur, TABLE) is None:
            conn.rollback()
            raise LookupError("raw_prices is empty: materialize it first")
        cur.execute(
            f"""SELECT {", ".join(PRICE_COLUMNS)}
            FROM {TABLE} WHERE trade_date <= %s AND ticker = ANY(%s)
            ORDER BY ticker, trade_date""",
            (cutoff, list(tickers)),
        )
        rows = cur.fetchall()
    conn.rollback()
    frame = pd.DataFrame(rows, columns=list(PRICE_COLUMNS))
    for col in ("open", "high", "low", "close", "adj_close", "volume"):
        frame[col] = frame[col].astype(float)
    return frame
