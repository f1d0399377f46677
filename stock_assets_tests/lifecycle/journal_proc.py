"""Child processes of test_journal.py: a promoter that may be killed at a failpoint, a racer
that promotes in lock-step rounds with another, and a retraining launched next to another."""

from __future__ import annotations

import sys


def _mlflow() -> None:
    from stock_assets.lifecycle.registry import setup

    setup()


def promote(name: str, version: str) -> None:
    """`python -m ... promote NAME VERSION`: one journal move (failpoints from the env)."""
    from stock_assets.defs.resources import PostgresResource
    from stock_assets.lifecycle.journal import move

    _mlflow()
    with PostgresResource().connect() as conn:
        move(conn, name, version, reason="test promote")


def race(name: str, target: str, rounds: int, barrier, results) -> None:
    """Each round: read production, wait for the others, compare-and-set to `target`."""
    from stock_assets.defs.resources import PostgresResource
    from stock_assets.lifecycle.journal import StaleProduction, move
    from stock_assets.lifecycle.registry import production

    _mlflow()
    with PostgresResource().connect() as conn:
        for i in range(rounds):
            seen = production(name).version
            barrier.wait()
            try:
                moved = move(conn, name, target, expected=seen, reason=f"race {i}")
                results.put((i, target, "noop" if moved.noop else "moved", seen))
            except StaleProduction as exc:
                results.put((i, target, "stale", str(exc)))
            barrier.wait()


def bootstrap_at_once(name: str, prices, barrier, results) -> None:
    """What each of several first daily runs does on an empty registry, at the same instant."""
    from stock_assets.defs.resources import PostgresResource
    from stock_assets.lifecycle.journal import ensure_production

    _mlflow()
    with PostgresResource().connect() as conn:
        barrier.wait()
        results.put(ensure_production(conn, name, prices, lambda _: None).version)


def retrain(name: str, cutoff: str) -> None:
    """`python -m ... retrain NAME CUTOFF`: the CLI's retrain() on the synthetic test market."""
    import datetime as dt

    from dagster import DagsterInstance

    from stock_assets.commands.retrain import retrain as run
    from stock_assets.definitions import build_definitions
    from stock_assets.lifecycle.retraining_lease import RetrainingBusy
    from stock_assets.settings import load_settings
    from stock_assets_tests.markets import SYN, TINY

    settings = load_settings().with_market(start_date="2016-01-04")
    defs = build_definitions(settings, source=SYN, retraining={**TINY, "model_name": name})
    try:
        outcome = run(
            defs,
            DagsterInstance.ephemeral(),
            cutoff=dt.date.fromisoformat(cutoff),
            log_level="CRITICAL",
        )
    except RetrainingBusy as exc:
        print(f"busy before start: {exc}")
        sys.exit(3)
    print(f"candidate={outcome.candidate_version} ok={outcome.ok} failure={outcome.failure}")
    sys.exit(0 if outcome.ok else 4)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"promote": promote, "retrain": retrain}[command](*args)
