"""Frames in Postgres tables: types round-trip, slices replace atomically, bad frames refused."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from stock_assets.storage.writer import (
    SchemaMismatch,
    Slice,
    SliceViolation,
    read_slice,
    replace_slice,
)
from stock_assets_tests.conftest import query


def _frame(days: list[dt.date], tickers=("A", "B"), value: float = 1.0) -> pd.DataFrame:
    rows = [(d, t) for d in days for t in tickers]
    n = len(rows)
    return pd.DataFrame(
        {
            "trade_date": pd.Series([d for d, _ in rows], dtype=object),
            "ticker": [t for _, t in rows],
            "close": np.full(n, value),
            "volume": np.arange(n, dtype="int64"),
            "flag": np.arange(n) % 2 == 0,
            "note": ["x"] * n,
            "params": [{"a": 1, "b": [1.5, None]}] * n,
            "created_at": pd.Series(
                pd.Timestamp("2026-11-26 12:00:00.123456", tz="UTC"), index=range(n)
            ),
        }
    )


DAYS = [dt.date(2020, 1, d) for d in (2, 3, 6, 7, 8)]
PK = ["trade_date", "ticker"]


def _window(first: dt.date, last: dt.date) -> Slice:
    return Slice("trade_date", start=first, end=last + dt.timedelta(days=1))


def test_round_trip_keeps_types_and_values(conn):
    frame = _frame(DAYS)
    frame.loc[1, "close"] = np.nan
    frame.loc[2, "note"] = ""
    frame.loc[3, "note"] = None
    replace_slice(conn, "t_rt", frame, _window(DAYS[0], DAYS[-1]), PK)
    back = read_slice(conn, "t_rt", Slice(), order_by=PK)
    assert list(back.columns) == list(frame.columns)
    assert back["trade_date"].tolist() == frame["trade_date"].tolist()
    assert isinstance(back["trade_date"].iloc[0], dt.date)
    assert back["volume"].dtype == np.int64 and back["flag"].dtype == bool
    assert np.isnan(back.loc[1, "close"]) and back.loc[0, "close"] == 1.0
    assert back.loc[2, "note"] == "" and back.loc[3, "note"] is None
    assert back["params"].iloc[0] == {"a": 1, "b": [1.5, None]}
    assert back["created_at"].iloc[0] == pd.Timestamp("2026-11-26 12:00:00.123456", tz="UTC")
    types = dict(
        query(
            conn.dsn,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 't_rt'",
        )
    )
    assert types["trade_date"] == "date" and types["params"] == "jsonb"
    assert types["created_at"] == "timestamp with time zone"


def test_replacing_a_range_twice_leaves_one_copy(conn):
    replace_slice(conn, "t_idem", _frame(DAYS), _window(DAYS[0], DAYS[-1]), PK)
    middle = _window(DAYS[1], DAYS[3])
    for value in (2.0, 3.0):
        replace_slice(conn, "t_idem", _frame(DAYS[1:4], value=value), middle, PK)
    back = read_slice(conn, "t_idem", Slice(), order_by=PK)
    assert len(back) == len(DAYS) * 2
    assert back.groupby("trade_date")["close"].first().tolist() == [1.0, 3.0, 3.0, 3.0, 1.0]


def test_failed_write_leaves_previous_slice_intact(conn):
    replace_slice(conn, "t_fail", _frame(DAYS), _window(DAYS[0], DAYS[-1]), PK)
    broken = _frame(DAYS, value=9.0)
    broken = pd.concat([broken, broken.tail(1)], ignore_index=True)  # duplicate key at the end
    with pytest.raises(SchemaMismatch, match="duplicate rows"):
        replace_slice(conn, "t_fail", broken, _window(DAYS[0], DAYS[-1]), PK)
    back = read_slice(conn, "t_fail", Slice(), order_by=PK)
    assert len(back) == 10 and (back["close"] == 1.0).all()


def test_frame_that_does_not_fit_names_columns_and_leaves_table(conn):
    replace_slice(conn, "t_fit", _frame(DAYS), _window(DAYS[0], DAYS[-1]), PK)
    bad = _frame(DAYS).drop(columns=["note"]).assign(extra=1.0, volume="many")
    with pytest.raises(SchemaMismatch) as err:
        replace_slice(conn, "t_fit", bad, _window(DAYS[0], DAYS[-1]), PK)
    message = str(err.value)
    assert "missing from the frame: note" in message
    assert "not in the table: extra" in message
    assert "volume is TEXT in the frame but BIGINT in the table" in message
    assert len(read_slice(conn, "t_fit", Slice())) == 10


def test_rows_outside_the_partition_are_refused(conn):
    with pytest.raises(SliceViolation, match="outside the partition"):
        replace_slice(conn, "t_out", _frame(DAYS), _window(DAYS[0], DAYS[1]), PK)
    assert query(conn.dsn, "SELECT to_regclass('t_out') IS NULL") == [(True,)]


def test_key_slices_replace_only_their_keys(conn):
    frame = _frame(DAYS).assign(run=lambda f: np.where(f.index < 4, "r1", "r2"))
    replace_slice(conn, "t_keys", frame, Slice("run", keys=("r1", "r2")))
    replace_slice(
        conn, "t_keys", frame[frame.run == "r1"].assign(close=5.0), Slice("run", keys=("r1",))
    )
    back = read_slice(conn, "t_keys", Slice("run", keys=("r1",)))
    assert len(back) == 4 and (back["close"] == 5.0).all()
    assert len(read_slice(conn, "t_keys", Slice("run", keys=("r2",)))) == 6


def test_declared_new_columns_are_added_in_place_and_only_with_the_write(conn):
    """An older state's table gains a column the code added later (NULL in its old rows); an
    undeclared extra column is still refused; a failed write adds nothing."""
    replace_slice(conn, "t_grow", _frame(DAYS[:2]), _window(DAYS[0], DAYS[1]), PK)
    added = (("band", "DOUBLE PRECISION"),)
    broken = _frame(DAYS[2:4]).assign(band=np.nan)  # all NaN: typed by the declaration
    broken = pd.concat([broken, broken.tail(1)], ignore_index=True)
    with pytest.raises(SchemaMismatch, match="duplicate rows"):
        replace_slice(conn, "t_grow", broken, _window(DAYS[2], DAYS[3]), PK, added=added)
    assert "band" not in read_slice(conn, "t_grow", Slice()).columns
    newer = _frame(DAYS[2:4]).assign(band=np.nan)
    replace_slice(conn, "t_grow", newer, _window(DAYS[2], DAYS[3]), PK, added=added)
    newest = _frame(DAYS[4:]).assign(band=2.5)
    replace_slice(conn, "t_grow", newest, _window(DAYS[4], DAYS[4]), PK, added=added)
    back = read_slice(conn, "t_grow", Slice(), order_by=PK)
    assert back["band"].isna().sum() == 8 and (back["band"].dropna() == 2.5).all()
    types = dict(
        query(
            conn.dsn,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 't_grow'",
        )
    )
    assert types["band"] == "double precision"
    with pytest.raises(SchemaMismatch, match="not in the table: other"):
        replace_slice(conn, "t_grow", newest.assign(other=1.0), _window(DAYS[4], DAYS[4]), PK)


def test_declared_indexes_come_with_the_table_and_reach_older_tables(conn):
    def indexes(table: str) -> set[str]:
        rows = query(conn.dsn, "SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,))
        return {name for (name,) in rows}

    by_ticker = (("ticker", "trade_date"),)
    replace_slice(conn, "t_ix", _frame(DAYS), _window(DAYS[0], DAYS[-1]), PK, indexes=by_ticker)
    assert "t_ix_ticker_trade_date_idx" in indexes("t_ix")
    replace_slice(conn, "t_ix_old", _frame(DAYS[:2]), _window(DAYS[0], DAYS[1]), PK)
    assert "t_ix_old_ticker_trade_date_idx" not in indexes("t_ix_old")
    for _ in range(2):  # added once, then found
        replace_slice(
            conn, "t_ix_old", _frame(DAYS[2:]), _window(DAYS[2], DAYS[-1]), PK, indexes=by_ticker
        )
    assert "t_ix_old_ticker_trade_date_idx" in indexes("t_ix_old")
    assert len(read_slice(conn, "t_ix_old", Slice())) == 10


def test_a_covering_index_replaces_the_plain_one_of_the_same_key(conn):
    """`+column` entries are INCLUDEd: a reader gets them from the index alone. A table that
    has the plain index gets the covering one on its next write, and the plain one goes."""

    def definitions(table: str) -> dict[str, str]:
        rows = query(
            conn.dsn, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (table,)
        )
        return dict(rows)

    plain, covering = (("ticker", "trade_date"),), (("ticker", "trade_date", "+close"),)
    replace_slice(conn, "t_cov", _frame(DAYS[:2]), _window(DAYS[0], DAYS[1]), PK, indexes=plain)
    assert "t_cov_ticker_trade_date_idx" in definitions("t_cov")
    replace_slice(conn, "t_cov", _frame(DAYS[2:]), _window(DAYS[2], DAYS[-1]), PK, indexes=covering)
    found = definitions("t_cov")
    assert "t_cov_ticker_trade_date_idx" not in found
    assert found["t_cov_ticker_trade_date_cover_idx"].endswith(
        "(ticker, trade_date) INCLUDE (close)"
    )
    assert len(read_slice(conn, "t_cov", Slice())) == 10
