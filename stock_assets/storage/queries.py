"""Reads of the operations tables: predictions, closes and the performance log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from stock_assets.storage.schema import (
    DAILY_PREDICTIONS,
    PERFORMANCE_COLUMNS,
    PERFORMANCE_LOG,
    RAW_PRICES,
)
from stock_assets.storage.writer import query_frame, table_columns


def exists(conn: Any, table: str) -> bool:
    with conn.cursor() as cur:
        found = table_columns(cur, table) is not None
    conn.rollback()
    return found


def predictions_targeting(conn: Any, sessions: Sequence[dt.date], tickers: Sequence[str]):
    """Predictions whose target session is one of `sessions` (empty before the first)."""
    if not exists(conn, DAILY_PREDICTIONS.name):
        return pd.DataFrame()
    return query_frame(
        conn,
        "SELECT * FROM daily_predictions WHERE target_date = ANY(%s) AND ticker = ANY(%s)",
        (list(sessions), list(tickers)),
    )


def predictions_made_on(conn: Any, sessions: Sequence[dt.date]) -> pd.DataFrame:
    return query_frame(
        conn,
        "SELECT * FROM daily_predictions WHERE as_of_date = ANY(%s) ORDER BY as_of_date, ticker",
        (list(sessions),),
    )


def newest_prediction_day(conn: Any) -> dt.date | None:
    return query_frame(conn, "SELECT max(as_of_date) AS d FROM daily_predictions")["d"].iloc[0]


def closes_on(conn: Any, sessions: Sequence[dt.date], tickers: Sequence[str]) -> pd.DataFrame:
    return query_frame(
        conn,
        f"SELECT trade_date, ticker, close FROM {RAW_PRICES.name} "
        "WHERE trade_date = ANY(%s) AND ticker = ANY(%s)",
        (list(sessions), list(tickers)),
    )


def performance_between(conn: Any, first: dt.date, before: dt.date) -> pd.DataFrame:
    """Stored performance_log rows in [first, before)."""
    if not exists(conn, PERFORMANCE_LOG.name):
        return pd.DataFrame(columns=list(PERFORMANCE_COLUMNS))
    return query_frame(
        conn,
        "SELECT * FROM performance_log WHERE trade_date >= %s AND trade_date < %s",
        (first, before),
    )
