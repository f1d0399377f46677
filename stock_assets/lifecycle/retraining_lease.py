"""One retraining at a time per model, whatever launched it (CLI, sensor, UI, replay).

The run queue's tag limit serialises only runs the daemon dequeues; a run executed in process
(`stock-assets retrain`) never passes through it. So the first step of every retraining takes
a lease row in Postgres under a transaction lock. A lease whose run has finished, or whose
process on this host is gone (a killed CLI leaves its run STARTED for ever), is stale and is
taken over; a live one refuses the newcomer with a message naming it.
"""

from __future__ import annotations

import multiprocessing
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


def run_pid() -> int:
    """The process that lives as long as the run: this one when steps run in process, the
    run worker when each step is its child process (Dagster's multiprocess executor)."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid else os.getpid()


def finished_in(instance: Any) -> Callable[[str], bool | None]:
    """Whether a run of this Dagster instance has finished; None when the instance does not
    know it (a run of another instance: a test's, a second state folder)."""

    def finished(run_id: str) -> bool | None:
        run = instance.get_run_by_id(run_id)
        return None if run is None else run.is_finished

    return finished


def in_flight(lease: Lease, finished: Callable[[str], bool | None]) -> bool:
    """A lease is live while its run works: its process is not known dead, and its run has
    not finished (or, unknown to this instance, runs in another live process)."""
    alive = process_alive(lease.host, lease.pid)
    if alive is False:
        return False
    done = finished(lease.run_id)
    if done is not None:
        return not done
    return alive is None or lease.pid != os.getpid()


def busy(lease: Lease, model_name: str) -> RetrainingBusy:
    return RetrainingBusy(
        f"{lease.describe()} holds the retraining of {model_name}: one retraining at a time — "
        "wait for it, or join its Optuna study with `stock-assets tune-worker --dataset-run "
        f"{lease.dataset_run_id}`"
    )


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
    finished: Callable[[str], bool | None],
    pid: int | None = None,
) -> Lease | None:
    """Take the lease for `run_id`; returns the stale lease it replaced, if any. Raises
    RetrainingBusy when another run holds it and still works."""
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
        if previous is not None and previous.run_id != run_id and in_flight(previous, finished):
            conn.rollback()
            raise busy(previous, model_name)
        cur.execute(
            "INSERT INTO retraining_lease (model_name, run_id, dataset_run_id, host, pid) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (model_name) DO UPDATE SET "
            "run_id = EXCLUDED.run_id, dataset_run_id = EXCLUDED.dataset_run_id, "
            "host = EXCLUDED.host, pid = EXCLUDED.pid, taken_at = now()",
            (model_name, run_id, dataset_run_id, socket.gethostname(), pid or run_pid()),
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
