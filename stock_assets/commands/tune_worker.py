"""`stock-assets tune-worker`: an extra Optuna worker for a retraining that is tuning right now.

Workers scale out through the database, not through Dagster (nothing here imports it): the
`tuned_params` step's study lives in the `stocks` database, so any machine that reaches it can
run trials of the same study with the same objective (features and scalers read from the same
tables). The budget is the study's: the step and every worker stop once the study has that many
finished trials. A worker samples with its own random stream, so it does not repeat the step's
suggestions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import optuna

from stock_assets.ml.threads import limit_torch_threads
from stock_assets.ml.tuning import (
    FINISHED,
    budget_callback,
    open_study,
    open_study_name,
    study_objective,
)
from stock_assets.runtime.postgres import connect, ready_server
from stock_assets.settings import load_settings
from stock_assets.storage.writer import Slice, read_slice


def run_worker(
    key: str,
    budget: int | None,
    echo: Callable[[str], None],
    retraining: dict | None = None,
) -> int:
    """Run trials of dataset run `key`'s open study until it has `budget` finished trials;
    returns how many this worker finished. `retraining` overrides settings, as in
    `build_definitions` (the step and its workers must share the search space)."""
    settings = load_settings()
    limit_torch_threads(settings.torch_threads)
    config = dataclasses.replace(settings.retraining, **(retraining or {}))
    server = ready_server(settings)
    storage = optuna.storages.RDBStorage(url=server.for_db("stocks", driver="psycopg2"))
    name = open_study_name(storage, key)
    if name is None:
        raise ValueError(
            f"no open study for dataset run {key!r}: a worker joins the tuned_params step of a "
            "retraining while it runs (start the retraining first)"
        )
    where = Slice(column="dataset_run_id", keys=(key,))
    conn = connect(server.for_db("stocks"))
    try:
        processed = read_slice(conn, "processed_features", where)
        scalers = read_slice(conn, "scalers", where)
    finally:
        conn.close()
    if processed.empty or scalers.empty:
        raise ValueError(f"dataset run {key!r} has no processed_features/scalers rows yet")
    study = open_study(storage, name, seed=None)
    budget = budget or config.n_trials
    mine = 0

    def count(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal mine
        mine += trial.state in FINISHED
        echo(f"trial {trial.number}: {trial.state.name.lower()} {trial.value or ''}".rstrip())

    finished = sum(t.state in FINISHED for t in study.trials)
    echo(f"joined study {name}: {finished} of {budget} trials finished")
    if finished < budget:
        study.optimize(
            study_objective(processed, scalers, config),
            n_trials=budget - finished,
            callbacks=[budget_callback(budget), count],
        )
    return mine
