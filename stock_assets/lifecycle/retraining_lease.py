"""One retraining at a time per model, whatever launched it (CLI, sensor, UI, replay).

The run queue's tag limit serialises only runs the daemon dequeues; a run executed in process
(`stock-assets retrain`) never passes through it. So the first step of every retraining takes
a lease row in Postgres under a transaction lock. A lease whose run has finished, or whose
process on this host is gone (a killed CLI leaves its run STARTED for ever), is stale and is
taken over; a live one refuses the newcomer with a message naming it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stock_assets.storage.schema import RETRAINING_LEASE_DDL
from stock_assets.storage.writer import ensure_table


class RetrainingBusy(RuntimeError):
    """Another retraining of the same model is in flight."""


@dataclass(frozen=True)
class Lease:
    model_name: str
    run_id: str
    dataset_run_id: str
    host: str
    pid: int
    taken_at: Any

    def describe(self) -> str:
        return (
            f"retraining run {self.run_id} (dataset run {self.dataset_run_id}, process "
            f"{self.pid} on {self.host}, since {self.taken_at:%Y-%m-%d %H:%M:%S %Z})"
        )


def process_alive(host: str, pid: int) -> bool | None:
    """Whether the process lives; None when it runs on another host (unknowable here)."""
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(conn: Any, model_name: str) -> Lease | None:
    with conn.cursor() as cur:
        ensure_table(cur, "retraining_lease", RETRAINING_LEASE_DDL)
        cur.execute(
            "SELECT model_name, run_id, dataset_run_id, host, pid, taken_at "
            "FROM retraining_lease WHERE model_name = %s",
            (model_name,),
        )
        row = cur.fetchone()
    conn.commit()
    return Lease(*row) if row else None


def acquire(
    conn: Any,
    model_name: str,
    run_id: str,
    dataset_run_id: str,
    in_flight: Callable[[Lease], bool],
    pid: int | None = None,
) -> Lease | None:
    """Take the lease for `run_id`; returns the stale lease it replaced, if any. Raises
    RetrainingBusy when another run holds it and `in_flight` says that run still works."""
    with conn.cursor() as cur:
        ensure_table(cur, "retraining_lease", RETRAINING_LEASE_DDL)
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"retraining/{model_name}",))
        cur.execute(
            "SELECT model_name, run_id, dataset_run_id, host, pid, taken_at "
            "FROM retraining_lease WHERE model_name = %s",
            (model_name,),
        )
        row = cur.fetchone()
        previous = Lease(*row) if row else None
        if previous is not None and previous.run_id != run_id and in_flight(previous):
            conn.rollback()
            raise RetrainingBusy(
                f"{previous.describe()} holds the retraining of {model_name}: one retraining "
                "at a time — wait for it, or join its Optuna study with `stock-assets "
                f"tune-worker --dataset-run {previous.dataset_run_id}`"
            )
        cur.execute(
            "INSERT INTO retraining_lease (model_name, run_id, dataset_run_id, host, pid) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (model_name) DO UPDATE SET "
            "run_id = EXCLUDED.run_id, dataset_run_id = EXCLUDED.dataset_run_id, "
            "host = EXCLUDED.host, pid = EXCLUDED.pid, taken_at = now()",
            (model_name, run_id, dataset_run_id, socket.gethostname(), pid or os.getpid()),
        )
    conn.commit()
    return previous if previous is not None and previous.run_id != run_id else None


def release(conn: Any, model_name: str, run_id: str) -> None:
    with conn.cursor() as cur:
        ensure_table(cur, "retraining_lease", RETRAINING_LEASE_DDL)
        cur.execute(
            "DELETE FROM retraining_lease WHERE model_name = %s AND run_id = %s",
            (model_name, run_id),
        )
    conn.commit()
