"""The retraining sensor: reads performance_log's per-partition summaries (no data loads) and
asks for a run of the retraining group for a new dataset run when the policy says so.

No `from __future__ import annotations` here: Dagster reads the context and resource hints.
"""

import datetime as dt

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.storage.dagster_run import DagsterRunStatus

from stock_assets.defs.partitions import dataset_runs_partitions
from stock_assets.defs.resources import MarketResource, PostgresResource
from stock_assets.defs.retraining import REASON_TAG
from stock_assets.defs.tracking import ModelRegistryResource
from stock_assets.lifecycle.dataset_runs import cutoff_of, next_key
from stock_assets.lifecycle.policy import PolicyState, Thresholds, breach
from stock_assets.lifecycle.registry import production
from stock_assets.market.calendars import sessions_between
from stock_assets.ml.bundle import NAIVE
from stock_assets.storage.prices import stored_span

IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def _sessions_after(first: dt.date, last: dt.date, exchange: str) -> int:
    """Sessions in (first, last]."""
    return max(len(sessions_between(first, last, exchange)) - 1, 0)


def build_retraining_sensor(thresholds: Thresholds, job_name: str = "retrain") -> SensorDefinition:
    thresholds.validate()

    @sensor(
        name="retraining_sensor",
        job_name=job_name,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.STOPPED,
        description="Requests a retraining when performance_log's rolling summary breaches "
        "the thresholds, for the first learned model, or when the newest model is stale.",
    )
    def retraining_sensor(
        context: SensorEvaluationContext,
        stocks_db: PostgresResource,
        registry: ModelRegistryResource,
        market: MarketResource,
    ):
        state = PolicyState.from_cursor(context.cursor)
        instance = context.instance
        records = instance.fetch_materializations(
            AssetRecordsFilter(
                asset_key=AssetKey("performance_log"), after_storage_id=state.storage_id
            ),
            limit=10_000,
            ascending=True,
        ).records
        reason, cutoff = None, None
        for record in records:
            state.storage_id = max(state.storage_id, record.storage_id)
            if record.partition_key:
                state.newest_session = max(state.newest_session or "", record.partition_key)
            metadata = record.asset_materialization.metadata
            summary = {
                k.removeprefix("rolling_"): v.value
                for k, v in metadata.items()
                if k.startswith("rolling_")
            }
            found = breach(summary, state, thresholds)
            if found and record.partition_key:
                # act on the first breach; later summaries wait for the next tick, and the
                # streak starts over so one breach asks once
                reason, cutoff = found, dt.date.fromisoformat(record.partition_key)
                state.low_skill_streak = 0
                break
        cursor = state.to_cursor()

        def skip(message: str) -> SensorResult:
            return SensorResult(skip_reason=SkipReason(message), cursor=cursor)

        in_flight = instance.get_run_records(
            RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=1
        )
        if in_flight:
            return skip(
                f"retraining run {in_flight[0].dagster_run.run_id} is queued or in progress"
            )

        keys = list(instance.get_dynamic_partitions(dataset_runs_partitions.name))
        newest_run = max((cutoff_of(k) for k in keys), default=None)
        with stocks_db.connect() as conn:
            span = stored_span(conn)
        if span is None:
            return skip("raw_prices is empty")
        newest = dt.date.fromisoformat(state.newest_session) if state.newest_session else span[1]
        if reason is None and not keys:
            registry.setup()
            current = production(registry.model_name)
            history = _sessions_after(span[0], newest, market.exchange) + 1
            if current is None or current.kind == NAIVE:
                if history >= thresholds.first_model_sessions:
                    reason, cutoff = (
                        f"first learned model: {history} sessions of history, naive serves",
                        newest,
                    )
                else:
                    return skip(
                        f"waiting for history for the first model: {history} of "
                        f"{thresholds.first_model_sessions} sessions"
                    )
        if reason is None and newest_run is not None:
            age = _sessions_after(newest_run, newest, market.exchange)
            if age > thresholds.stale_sessions:
                reason, cutoff = (
                    f"newest dataset run ({newest_run}) is {age} sessions old "
                    f"(> {thresholds.stale_sessions})",
                    newest,
                )
        if reason is None:
            return skip(f"healthy: {len(records)} new performance summaries, no threshold breached")
        if newest_run is not None:
            since = _sessions_after(newest_run, cutoff, market.exchange)
            if since < thresholds.cooldown_sessions:
                return skip(
                    f"cooldown: last retraining cutoff {newest_run} is {since} sessions before "
                    f"{cutoff} (< {thresholds.cooldown_sessions}); not acting on: {reason}"
                )
        key = next_key(keys, cutoff)
        context.log.info(f"requesting retraining {key}: {reason}")
        return SensorResult(
            run_requests=[RunRequest(run_key=key, partition_key=key, tags={REASON_TAG: reason})],
            dynamic_partitions_requests=[dataset_runs_partitions.build_add_request([key])],
            cursor=cursor,
        )

    return retraining_sensor
