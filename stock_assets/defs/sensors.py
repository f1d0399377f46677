"""The retraining sensor: gathers facts (performance_log's per-partition summaries — no data
loads —, runs in flight, dataset runs, stored span) and lets `lifecycle.policy.decide` rule.

No `from __future__ import annotations` here: Dagster reads the context and resource hints.
"""

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.storage.dagster_run import DagsterRunStatus

from stock_assets.defs.demotion import DEMOTE_JOB, demote_production
from stock_assets.defs.jobs import retrain
from stock_assets.defs.partitions import dataset_runs_partitions
from stock_assets.defs.resources import (
    MarketResource,
    ModelRegistryResource,
    PolicyConfig,
    PostgresResource,
)
from stock_assets.defs.tags import REASON_TAG, RETRAIN_JOB
from stock_assets.lifecycle.demotion import verdict
from stock_assets.lifecycle.journal import reconcile
from stock_assets.lifecycle.policy import PolicyState, Summary, decide
from stock_assets.lifecycle.registry import production
from stock_assets.storage.prices import stored_span
from stock_assets.storage.queries import serving_stint

IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


# A cursor that evaluates every stored performance_log summary from the oldest on (set it in
# the UI's sensor page, "Set cursor value"); the first tick otherwise starts near the newest.
FROM_START = PolicyState().to_cursor()


def _from_newest(context: SensorEvaluationContext, streak: int) -> PolicyState:
    """A sensor turned on over existing history acts on the present, as replay does: its first
    tick reads the newest `streak` summaries (enough to see a breach going on now), not years
    of history one breach per tick."""
    newest = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("performance_log")), limit=streak, ascending=False
    ).records
    return PolicyState(storage_id=min(r.storage_id for r in newest) - 1 if newest else 0)


def _summaries(context: SensorEvaluationContext, after: int) -> list[Summary]:
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("performance_log"), after_storage_id=after),
        limit=10_000,
        ascending=True,
    ).records
    return [
        Summary(
            r.storage_id,
            r.partition_key,
            {
                k.removeprefix("rolling_"): v.value
                for k, v in r.asset_materialization.metadata.items()
                if k.startswith("rolling_")
            },
        )
        for r in records
    ]


def _demotion(context: SensorEvaluationContext, conn, current, t) -> RunRequest | None:
    """A run of demote_production when the serving learned model is worse than naive over its
    current stint (lifecycle/demotion.py), unless a demotion is already queued or running."""
    if current is None:
        return None
    rows = serving_stint(conn, current.version, t.demotion_sessions)
    said = verdict(rows, current.version, current.kind, t)
    if not said.demote:
        return None
    if context.instance.get_run_records(
        RunsFilter(job_name=DEMOTE_JOB, statuses=IN_FLIGHT), limit=1
    ):
        context.log.info(f"demotion already in flight: {said.reason}")
        return None
    context.log.warning(f"requesting demotion to naive: {said.reason}")
    newest = str(rows["trade_date"].max())
    return RunRequest(
        run_key=f"demote v{current.version} {newest}",
        job_name=DEMOTE_JOB,
        run_config={
            "ops": {
                "demote_to_naive": {
                    "config": {"expected_version": current.version, "reason": said.reason}
                }
            }
        },
        tags={REASON_TAG: said.reason},
    )


@sensor(
    name="retraining_sensor",
    jobs=[retrain, demote_production],
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Requests a retraining when performance_log's rolling summary breaches "
    "the thresholds, for the first learned model, or when the newest model is stale; and a "
    "demotion to naive when the serving learned model is significantly worse than naive.",
)
def retraining_sensor(
    context: SensorEvaluationContext,
    stocks_db: PostgresResource,
    registry: ModelRegistryResource,
    market: MarketResource,
    policy: PolicyConfig,
):
    state = (
        PolicyState.from_cursor(context.cursor)
        if context.cursor
        else _from_newest(context, policy.settings().skill_sessions)
    )
    running = context.instance.get_run_records(
        RunsFilter(job_name=RETRAIN_JOB, statuses=IN_FLIGHT), limit=1
    )
    with stocks_db.connect() as conn:
        span = stored_span(conn)
        registry.setup()
        reconcile(conn, registry.model_name, context.log.warning)  # alias and journal agree
        current = production(registry.model_name)  # read once: both rules ask
        demotion = _demotion(context, conn, current, policy.settings())

    decision = decide(
        _summaries(context, state.storage_id),
        state,
        policy.settings(),
        in_flight=running[0].dagster_run.run_id if running else None,
        dataset_runs=context.instance.get_dynamic_partitions(dataset_runs_partitions.name),
        span=span,
        production_kind=lambda: current.kind if current else None,
        exchange=market.exchange,
    )
    cursor = decision.state.to_cursor()
    demotions = [demotion] if demotion is not None else []
    if decision.key is None:
        if demotions:
            return SensorResult(run_requests=demotions, cursor=cursor)
        return SensorResult(skip_reason=SkipReason(decision.skip), cursor=cursor)
    context.log.info(f"requesting retraining {decision.key}: {decision.reason}")
    return SensorResult(
        run_requests=[
            *demotions,
            RunRequest(
                run_key=decision.key,
                job_name=RETRAIN_JOB,
                partition_key=decision.key,
                tags={REASON_TAG: decision.reason},
            ),
        ],
        dynamic_partitions_requests=[dataset_runs_partitions.build_add_request([decision.key])],
        cursor=cursor,
    )
