"""`stock-assets retrain`: add a dataset run and materialize the retraining group in process.

The retraining lease (lifecycle/retraining_lease.py) is checked before a dataset run is added,
taken by the run's first step, and released when the in-process run returns, whatever happened.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from dagster import DagsterInstance, Definitions

from stock_assets.defs.partitions import dataset_runs_partitions
from stock_assets.defs.resources import PostgresResource
from stock_assets.defs.tags import CHECK_STEP, FAILURE_TAG, REASON_TAG
from stock_assets.lifecycle.dataset_runs import next_key
from stock_assets.lifecycle.journal import reconcile
from stock_assets.lifecycle.registry import EXPERIMENT, production
from stock_assets.lifecycle.retraining_lease import busy, finished_in, holder, in_flight, release
from stock_assets.storage.prices import stored_span


@dataclass
class RetrainOutcome:
    dataset_run_id: str
    success: bool
    run_id: str
    check_passed: bool | None
    check_reason: str
    candidate_version: str | None
    production_version: str | None
    production_kind: str | None
    failed_steps: list[str]
    failure: str = ""  # which step failed or was interrupted, and its error

    @property
    def ok(self) -> bool:
        """The run did its job: promoted, or stopped only by a failed promotion check."""
        return self.success or self.failed_steps == [CHECK_STEP]


def _failure(result, check_reason: str) -> str:
    """The step and the error that ended the run, in one line."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error is not None and error.cause is not None:  # Dagster wraps the cause
                error = error.cause
            message = error.message.strip() if error else "no error recorded"
            if event.step_key == CHECK_STEP and check_reason:
                message = check_reason
            return f"step {event.step_key} failed: {message}"
    if result.success:
        return ""
    started = {e.step_key for e in result.all_events if e.is_step_start}
    ended = {e.step_key for e in result.all_events if e.is_step_success or e.is_step_failure}
    unfinished = sorted(started - ended)
    if unfinished:
        return f"step {', '.join(unfinished)} was interrupted before it finished"
    return "the run failed before any step started"


def execute_retraining(defs: Definitions, instance: DagsterInstance, key: str, **kwargs):
    """Run the retrain job in process for dataset run `key`; the lease never outlives it."""
    model_name = defs.resources["retraining"].model_name
    run_id = kwargs.pop("run_id", None)
    try:
        return defs.resolve_job_def("retrain").execute_in_process(
            instance=instance, partition_key=key, raise_on_error=False, run_id=run_id, **kwargs
        )
    finally:
        with PostgresResource().connect() as conn:
            lease = holder(conn, model_name)
            if lease is not None and lease.dataset_run_id == key and lease.pid == os.getpid():
                release(conn, model_name, lease.run_id)


def refuse_if_busy(instance: DagsterInstance, model_name: str) -> None:
    """Fail before adding a dataset run when another retraining is in flight (the first step
    decides atomically; this spares the history an empty partition)."""
    with PostgresResource().connect() as conn:
        lease = holder(conn, model_name)
    if lease is not None and in_flight(lease, finished_in(instance)):
        raise busy(lease, model_name)


def retrain(
    defs: Definitions,
    instance: DagsterInstance,
    cutoff: dt.date | None = None,
    reason: str = "manual",
    log_level: str = "INFO",
) -> RetrainOutcome:
    retraining = defs.resources["retraining"]
    with PostgresResource().connect() as conn:
        span = stored_span(conn)
    if span is None:
        raise ValueError("raw_prices is empty: ingest prices before retraining")
    cutoff = cutoff or span[1]
    if cutoff > span[1]:
        raise ValueError(f"cutoff {cutoff} is after the newest stored session {span[1]}")
    refuse_if_busy(instance, retraining.model_name)
    name = dataset_runs_partitions.name
    key = next_key(list(instance.get_dynamic_partitions(name)), cutoff)
    instance.add_dynamic_partitions(name, [key])
    result = execute_retraining(
        defs,
        instance,
        key,
        tags={REASON_TAG: reason},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    check = evaluations.get("beats_production")
    check_reason = "" if check is None else str(check.metadata["reason"].value)
    candidate = None
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == "candidate_model":
            candidate = str(event.materialization.metadata["model_version"].value)
    failure = _failure(result, check_reason)
    if failure:
        _record_failure(instance, result.run_id, failure)
    with PostgresResource().connect() as conn:
        reconcile(conn, retraining.model_name)
    current = production(retraining.model_name)
    return RetrainOutcome(
        dataset_run_id=key,
        success=result.success,
        run_id=result.run_id,
        check_passed=None if check is None else check.passed,
        check_reason=check_reason,
        candidate_version=candidate,
        production_version=current.version if current else None,
        production_kind=current.kind if current else None,
        failed_steps=failed,
        failure=failure,
    )


def _record_failure(instance: DagsterInstance, run_id: str, failure: str) -> None:
    """The reason on the Dagster run (a tag the UI shows) and on its MLflow run."""
    import mlflow

    instance.add_run_tags(run_id, {FAILURE_TAG: failure[:2000]})
    try:
        runs = mlflow.search_runs(
            experiment_names=[EXPERIMENT],
            filter_string=f"tags.dagster_run_id = '{run_id}'",
            output_format="list",
        )
        for run in runs:
            mlflow.MlflowClient().set_tag(run.info.run_id, "failure", failure[:5000])
    except Exception as exc:  # the store may be what failed: the run tag and the CLI still say
        instance.add_run_tags(run_id, {FAILURE_TAG + "_mlflow": f"not recorded: {exc}"[:500]})
