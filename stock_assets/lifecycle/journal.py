"""Every move of the `production` alias, as a crash-safe journal in Postgres.

One advisory lock per model name serialises movers (a check's promotion, the CLI, the naive
bootstrap, reconcile). Under it a move checks that production still holds the version the
caller expects (compare-and-set), commits a `pending` row, moves the alias, and marks the row
`done`. A process killed between the alias and the mark leaves a `pending` row behind; the
next reader runs `reconcile`, which sees where the alias points and finishes the row (alias
moved) or abandons it (alias never moved). The lock is a session lock: Postgres drops it
with a dead process's connection, so a crash never leaves it held.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd

from stock_assets.lifecycle.history import Move, production_stack, undo_target
from stock_assets.lifecycle.registry import ALIAS, RegistryError, production
from stock_assets.runtime import failpoints
from stock_assets.storage.schema import MODEL_PROMOTIONS_DDL
from stock_assets.storage.writer import ensure_table, note_write

LOCK_WAIT_SECONDS = 120.0
ANY = object()  # `expected`: move whatever holds production now (the operator's promote)
Log = Callable[[str], None]


class PromotionBusy(RegistryError):
    """Another mover held the lock for longer than the wait allows."""


class StaleProduction(RegistryError):
    """Production is no longer the version the caller judged against or saw."""


@dataclass(frozen=True)
class Moved:
    model_name: str
    previous: str | None
    new: str
    noop: bool = False


def _ensure(conn: Any) -> None:
    with conn.cursor() as cur:
        ensure_table(cur, "model_promotions", MODEL_PROMOTIONS_DDL)
        cur.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'model_promotions' AND column_name = 'status'"
        )
        if cur.fetchone()[0] == 0:  # a journal from before the pending/done columns
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('stock_assets.model_promotions'))")
            cur.execute(MODEL_PROMOTIONS_DDL)
    conn.commit()


def _key(model_name: str) -> str:
    return f"stock_assets/promotion/{model_name}"


def _try_lock(conn: Any, model_name: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (_key(model_name),))
        got = bool(cur.fetchone()[0])
    conn.commit()
    return got


@contextmanager
def promotion_lock(
    conn: Any, model_name: str, wait_seconds: float = LOCK_WAIT_SECONDS
) -> Iterator[None]:
    """Hold the model's promotion lock (a session advisory lock on `conn`); 0 s: try once."""
    _ensure(conn)
    deadline = time.monotonic() + wait_seconds
    while not _try_lock(conn, model_name):
        if time.monotonic() >= deadline:
            raise PromotionBusy(
                f"another promotion of {model_name} held the lock for over {wait_seconds:.0f} s"
            )
        time.sleep(0.02)
    try:
        yield
    finally:
        if not conn.closed:
            conn.rollback()
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_key(model_name),))
            conn.commit()


def _set_alias(model_name: str, version: str) -> None:
    import mlflow

    mlflow.MlflowClient().set_registered_model_alias(model_name, ALIAS, version)


def _current(model_name: str) -> str | None:
    current = production(model_name)
    return current.version if current else None


def _reconcile_locked(conn: Any, model_name: str, log: Log) -> list[str]:
    repairs: list[str] = []
    pending = _rows_in(conn, model_name, "pending")
    alias = _current(model_name)
    for row_id, previous, new, action in pending:
        if alias == new:
            status, what = "done", f"finished: the alias had moved {previous} → {new}"
        else:
            status, what = "abandoned", f"abandoned: the alias never moved to {new}"
        with conn.cursor() as cur:
            cur.execute(
                "UPDATE model_promotions SET status = %s, finished_at = now(), "
                "reason = reason || %s WHERE id = %s",
                (status, f" [reconcile: {status}]", row_id),
            )
            note_write(cur, "model_promotions")
        conn.commit()
        repairs.append(f"reconcile: {action} #{row_id} of {model_name} {what}")
    last = _done_moves(conn, model_name)
    known = last[-1].new if last else None
    if alias is not None and alias != known:
        # moved outside the journal (the MLflow UI, an old client): record it as found
        reason = "alias moved outside the journal"
        _insert(conn, model_name, known, alias, "repair", "reconcile", reason, "done")
        repairs.append(f"reconcile: {model_name} alias found on {alias}, journal said {known}")
    for line in repairs:
        log(line)
    return repairs


def reconcile(conn: Any, model_name: str, log: Log = print) -> list[str]:
    """Make alias and journal agree; returns what was repaired. Skips while a mover holds the
    lock: its pending row is in flight, not abandoned."""
    try:
        with promotion_lock(conn, model_name, wait_seconds=0):
            return _reconcile_locked(conn, model_name, log)
    except PromotionBusy:
        return []


def _insert(
    conn: Any,
    model_name: str,
    previous: str | None,
    new: str,
    action: str,
    actor: str,
    reason: str,
    status: str,
    dataset_run_id: str | None = None,
    metrics: dict | None = None,
) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO model_promotions (model_name, previous_version, new_version, "
            "dataset_run_id, metrics, reason, action, actor, status, finished_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "CASE WHEN %s = 'done' THEN now() END) RETURNING id",
            (
                model_name,
                previous,
                new,
                dataset_run_id,
                json.dumps(metrics or {}),
                reason,
                action,
                actor,
                status,
                status,
            ),
        )
        row_id = cur.fetchone()[0]
        note_write(cur, "model_promotions")
    conn.commit()
    return row_id


def _rows_in(conn: Any, model_name: str, status: str) -> list[tuple]:
    """(id, previous, new, action) of the model's rows in `status`, oldest first."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, previous_version, new_version, action FROM model_promotions "
            "WHERE model_name = %s AND status = %s ORDER BY id",
            (model_name, status),
        )
        rows = cur.fetchall()
    conn.commit()
    return rows


def _done_moves(conn: Any, model_name: str) -> list[Move]:
    return [Move(p, n, a) for _, p, n, a in _rows_in(conn, model_name, "done")]


def _move_locked(
    conn: Any,
    model_name: str,
    target: str,
    expected: object,
    action: str,
    actor: str,
    reason: str,
    dataset_run_id: str | None,
    metrics: dict | None,
) -> Moved:
    import mlflow

    mlflow.MlflowClient().get_model_version(model_name, target)  # clear error when unknown
    current = _current(model_name)
    if expected is not ANY and current != expected:
        raise StaleProduction(
            f"production of {model_name} is version {current}, not version {expected} as "
            f"expected: refusing to move it to {target}"
        )
    if current == target:
        return Moved(model_name, current, target, noop=True)
    row_id = _insert(
        conn,
        model_name,
        current,
        target,
        action,
        actor,
        reason,
        "pending",
        dataset_run_id,
        metrics,
    )
    failpoints.hit("promotion.before_alias")
    _set_alias(model_name, target)
    failpoints.hit("promotion.after_alias")
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE model_promotions SET status = 'done', finished_at = now() WHERE id = %s",
            (row_id,),
        )
        note_write(cur, "model_promotions")
    conn.commit()
    return Moved(model_name, current, target)


def move(
    conn: Any,
    model_name: str,
    target: str,
    *,
    expected: object = ANY,
    actor: str = "cli",
    reason: str = "manual promotion",
    action: str = "promote",
    dataset_run_id: str | None = None,
    metrics: dict | None = None,
    log: Log = print,
) -> Moved:
    """Move production to `target` if it still holds `expected`; a no-op writes nothing."""
    with promotion_lock(conn, model_name):
        _reconcile_locked(conn, model_name, log)
        return _move_locked(
            conn, model_name, target, expected, action, actor, reason, dataset_run_id, metrics
        )


def rollback(
    conn: Any,
    model_name: str,
    to: str | None = None,
    *,
    actor: str = "cli",
    reason: str = "rollback",
    log: Log = print,
) -> Moved:
    """Undo: back to the version production held before the current one took over."""
    with promotion_lock(conn, model_name):
        _reconcile_locked(conn, model_name, log)
        current = _current(model_name)
        if current is None:
            raise RegistryError(f"no version of {model_name} holds {ALIAS!r}")
        target = undo_target(_done_moves(conn, model_name), current, to)
        return _move_locked(
            conn, model_name, target, current, "rollback", actor, reason, None, None
        )


def bootstrap(conn: Any, model_name: str, register: Callable[[], str], log: Log = print) -> str:
    """Give production to a version `register()` creates, if nothing holds it yet; several
    runs that bootstrap at once register and promote one version."""
    with promotion_lock(conn, model_name):
        _reconcile_locked(conn, model_name, log)
        current = _current(model_name)
        if current is not None:
            return current
        version = register()
        _move_locked(
            conn, model_name, version, None, "bootstrap", "bootstrap", "bootstrap", None, None
        )
        return version


def history(conn: Any, model_name: str) -> pd.DataFrame:
    """The journal of `model_name`, oldest first (pending and abandoned rows too)."""
    from stock_assets.storage.writer import query_frame

    _ensure(conn)
    return query_frame(
        conn,
        "SELECT id, promoted_at, previous_version, new_version, action, actor, status, "
        "reason, dataset_run_id FROM model_promotions WHERE model_name = %s ORDER BY id",
        (model_name,),
    )


def stack(conn: Any, model_name: str) -> list[str]:
    return production_stack(_done_moves(conn, model_name))


def ensure_production(conn: Any, model_name: str, prices: pd.DataFrame, log: Log = print):
    """Production as it stands (after reconciling); on an empty registry, naive gets it."""
    from stock_assets.lifecycle.registry import register_naive

    reconcile(conn, model_name, log)
    current = production(model_name)
    if current is not None:
        return current
    bootstrap(conn, model_name, lambda: register_naive(conn, model_name, prices), log)
    result = production(model_name)
    if result is None:
        raise RegistryError(f"bootstrap of {model_name} left no version holding {ALIAS!r}")
    return result
