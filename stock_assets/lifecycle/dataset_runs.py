"""Dataset runs: one per retraining, keyed by cutoff session (`2017-12-29`, `2017-12-29.r2`)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from stock_assets.storage.schema import DATASET_RUNS_DDL
from stock_assets.storage.writer import note_write

KEY = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:\.r(\d+))?$")


def cutoff_of(key: str) -> dt.date:
    match = KEY.match(key)
    if not match:
        raise ValueError(
            f"dataset run key {key!r} is not YYYY-MM-DD or YYYY-MM-DD.rN (the cutoff session)"
        )
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        raise ValueError(f"dataset run key {key!r} names no real date") from None


def next_key(existing: list[str], cutoff: dt.date) -> str:
    """The first free key for `cutoff`: the date itself, then .r2, .r3, …"""
    base = cutoff.isoformat()
    taken = {k for k in existing if k == base or k.startswith(base + ".r")}
    if base not in taken:
        return base
    n = 2
    while f"{base}.r{n}" in taken:
        n += 1
    return f"{base}.r{n}"


def record(conn: Any, key: str, reason: str, dagster_run_id: str | None) -> None:
    """Insert the run's row (kept when it already exists, e.g. a re-materialization)."""
    with conn.cursor() as cur:
        cur.execute(DATASET_RUNS_DDL)
        cur.execute(
            "INSERT INTO dataset_runs (dataset_run_id, cutoff, reason, requested_by_run) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (dataset_run_id) DO NOTHING",
            (key, cutoff_of(key), reason, dagster_run_id),
        )
        note_write(cur, "dataset_runs")
    conn.commit()
