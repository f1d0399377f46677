"""Reads of the operations tables: predictions, closes and the performance log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from stock_assets.market.adjust import in_previous_basis
from stock_assets.storage.schema import (
    CORPORATE_ACTIONS,
    DAILY_PREDICTIONS,
    INTERVAL_STATE,
    PERFORMANCE_COLUMNS,
    PERFORMANCE_LOG,
    RAW_PRICES,
)
from stock_assets.storage.writer import query_frame, table_exists


def predictions_targeting(conn: Any, sessions: Sequence[dt.date], tickers: Sequence[str]):
    """Predictions whose target session is one of `sessions` (empty before the first)."""
    if not table_exists(conn, DAILY_PREDICTIONS.name):
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
    """Each session's close in the basis of the session before it (what a share held the day
    before is worth, dividend included): the actual a prediction made the day before meets."""
    actions = table_exists(conn, CORPORATE_ACTIONS.name)
    join = "LEFT JOIN corporate_actions a USING (trade_date, ticker)" if actions else ""
    cols = (
        "a.split_ratio, a.dividend"
        if actions
        else "NULL::float8 AS split_ratio, NULL::float8 AS dividend"
    )
    frame = query_frame(
        conn,
        f"SELECT trade_date, ticker, p.close, {cols} FROM {RAW_PRICES.name} p {join} "
        "WHERE trade_date = ANY(%s) AND ticker = ANY(%s)",
        (list(sessions), list(tickers)),
    )
    close = in_previous_basis(
        frame["close"].astype(float),
        frame["split_ratio"].astype(float),
        frame["dividend"].astype(float),
    )
    return frame[["trade_date", "ticker"]].assign(close=close)


def performance_between(conn: Any, first: dt.date, before: dt.date) -> pd.DataFrame:
    """Stored performance_log rows in [first, before)."""
    if not table_exists(conn, PERFORMANCE_LOG.name):
        return pd.DataFrame(columns=list(PERFORMANCE_COLUMNS))
    return query_frame(
        conn,
        "SELECT * FROM performance_log WHERE trade_date >= %s AND trade_date < %s",
        (first, before),
    )


def serving_stint(conn: Any, version: str, sessions: int) -> pd.DataFrame:
    """performance_log rows of `version`'s current stint (after the newest session another
    version served), its newest `sessions` scored out-of-sample sessions: the demotion test's
    window. A version returned to by a rollback starts a new stint, as a promoted one does."""
    if not table_exists(conn, PERFORMANCE_LOG.name):
        return pd.DataFrame(columns=list(PERFORMANCE_COLUMNS))
    return query_frame(
        conn,
        "WITH since AS (SELECT max(trade_date) AS day FROM performance_log "
        "               WHERE model_version IS DISTINCT FROM %(v)s), "
        "days AS (SELECT DISTINCT trade_date FROM performance_log, since "
        "         WHERE model_version = %(v)s AND NOT in_sample AND actual_close IS NOT NULL "
        "         AND (since.day IS NULL OR trade_date > since.day) "
        "         ORDER BY trade_date DESC LIMIT %(n)s) "
        "SELECT * FROM performance_log WHERE model_version = %(v)s "
        "AND trade_date IN (SELECT trade_date FROM days)",
        {"v": version, "n": sessions},
    )


def interval_state_before(conn: Any, day: dt.date, tickers: Sequence[str]) -> pd.DataFrame:
    """Each ticker's newest interval_state row before `day`: where a run starting that day
    picks up the adaptation (empty before the first run)."""
    if not table_exists(conn, INTERVAL_STATE.name):
        return pd.DataFrame(columns=["trade_date", "ticker", "alpha", "lower_return"])
    return query_frame(
        conn,
        "SELECT DISTINCT ON (ticker) * FROM interval_state WHERE trade_date < %s "
        "AND ticker = ANY(%s) ORDER BY ticker, trade_date DESC",
        (day, list(tickers)),
    )
