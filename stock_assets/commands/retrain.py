"""`stock-assets retrain`: add a dataset run and materialize the retraining group in process."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dagster import DagsterInstance, Definitions

from stock_assets.defs.partitions import dataset_runs_partitions
from stock_assets.defs.resources import PostgresResource
from stock_assets.defs.tags import CHECK_STEP, REASON_TAG
from stock_assets.lifecycle.dataset_runs import next_key
from stock_assets.lifecycle.registry import production
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

    @property
    def ok(self) -> bool:
        """The run did its job: promoted, or stopped only by a failed promotion check."""
        return self.success or self.failed_steps == [CHECK_STEP]


def retrain(
    defs: Definitions,
    instance: DagsterInstance,
    cutoff: dt.date | None = None,
    reason: str = "manual",
    log_level: str = "INFO",
) -> RetrainOutcome:
    with PostgresResource().connect() as conn:
        span = stored_span(conn)
    if span is None:
        raise ValueError("raw_prices is empty: ingest prices before retraining")
    cutoff = cutoff or span[1]
    if cutoff > span[1]:
        raise ValueError(f"cutoff {cutoff} is after the newest stored session {span[1]}")
    name = dataset_runs_partitions.name
    key = next_key(list(instance.get_dynamic_partitions(name)), cutoff)
    instance.add_dynamic_partitions(name, [key])
    result = defs.resolve_job_def("retrain").execute_in_process(
        instance=instance,
        partition_key=key,
        tags={REASON_TAG: reason},
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    check = evaluations.get("beats_production")
    candidate = None
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == "candidate_model":
            candidate = str(event.materialization.metadata["model_version"].value)
    retraining = defs.resources["retraining"]
    current = production(retraining.model_name)
    return RetrainOutcome(
        dataset_run_id=key,
        success=result.success,
        run_id=result.run_id,
        check_passed=None if check is None else check.passed,
        check_reason="" if check is None else str(check.metadata["reason"].value),
        candidate_version=candidate,
        production_version=current.version if current else None,
        production_kind=current.kind if current else None,
        failed_steps=failed,
    )
