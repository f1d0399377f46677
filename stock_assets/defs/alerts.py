"""Alert sensors: a failed run anywhere in the code location, and a failed check on raw_prices or
candidate_model, become an email and/or a webhook call (`stock_assets.runtime.alerts`).

Both default to RUNNING: with no channel configured an alert is only logged, so nothing needs
setting up on a laptop. A delivery failure fails the sensor tick (visible in the UI) after the
cursor has moved past what was delivered, so a broken mail server does not resend the rest.

No `from __future__ import annotations` here: Dagster reads the context hints.
"""

from dagster import (
    AssetKey,
    DagsterEventType,
    DefaultSensorStatus,
    EventRecordsFilter,
    RunFailureSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from stock_assets.defs.resources import AlertChannels
from stock_assets.runtime.alerts import Alert, AlertDeliveryError, deliver

WATCHED_CHECKS = (AssetKey("raw_prices"), AssetKey("candidate_model"))
BATCH = 200


def run_failure_alert_for(run_id: str, job_name: str, tags: dict, steps: list[str], error: str):
    partition = tags.get(PARTITION_NAME_TAG) or (
        f"{tags[ASSET_PARTITION_RANGE_START_TAG]}…{tags[ASSET_PARTITION_RANGE_END_TAG]}"
        if ASSET_PARTITION_RANGE_START_TAG in tags
        else None
    )
    where = f" ({partition})" if partition else ""
    return Alert(
        kind="run_failure",
        subject=f"[stock_assets] run of {job_name}{where} failed",
        body=(
            f"Run {run_id} of job {job_name}{where} failed.\n"
            f"Failed steps: {', '.join(steps) or '(none: the run itself failed)'}\n\n{error}"
        ),
        details={"run_id": run_id, "job": job_name, "partition": partition, "steps": steps},
    )


@run_failure_sensor(
    name="run_failure_alert",
    default_status=DefaultSensorStatus.RUNNING,
    description="Mails and/or posts every failed run of this code location.",
)
def run_failure_alert(context: RunFailureSensorContext, alerts: AlertChannels) -> None:
    run = context.dagster_run
    steps = [e.step_key for e in context.get_step_failure_events() if e.step_key]
    messages = [
        e.event_specific_data.error.message.strip()
        for e in context.get_step_failure_events()
        if e.event_specific_data and getattr(e.event_specific_data, "error", None)
    ]
    if not messages and context.failure_event.message:
        messages = [context.failure_event.message]
    alert = run_failure_alert_for(
        run.run_id, run.job_name, dict(run.tags), steps, "\n".join(messages)
    )
    channels = deliver(alert, alerts.settings())
    context.log.info(f"alerted by {', '.join(channels) or 'log only'}: {alert.subject}")


def check_failure_alert_for(evaluation, run_id: str | None, partition: str | None) -> Alert:
    asset = evaluation.asset_key.to_user_string()
    severity = getattr(evaluation.severity, "value", str(evaluation.severity))
    where = f" ({partition})" if partition else ""
    facts = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
    lines = "\n".join(f"  {k}: {v}" for k, v in facts.items())
    return Alert(
        kind="check_failure",
        subject=f"[stock_assets] {severity} check {asset}.{evaluation.check_name} failed{where}",
        body=f"Check {evaluation.check_name} on {asset}{where} failed in run {run_id}.\n{lines}",
        details={
            "asset": asset,
            "check": evaluation.check_name,
            "severity": severity,
            "partition": partition,
            "run_id": run_id,
            "metadata": {k: str(v) for k, v in facts.items()},
        },
    )


@sensor(
    name="check_failure_alert",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Mails and/or posts failed checks on raw_prices and candidate_model.",
)
def check_failure_alert(context: SensorEvaluationContext, alerts: AlertChannels):
    records = context.instance.get_event_records(
        EventRecordsFilter(
            event_type=DagsterEventType.ASSET_CHECK_EVALUATION,
            after_cursor=int(context.cursor) if context.cursor else None,
        ),
        limit=BATCH if context.cursor else 1,
        ascending=bool(context.cursor),
    )
    if not context.cursor:
        # first tick: alert from now on, not on the whole history
        newest = records[0].storage_id if records else 0
        context.update_cursor(str(newest))
        return SkipReason(f"watching check evaluations after event {newest}")
    cfg = alerts.settings()
    sent, problems = 0, []
    for record in records:
        entry = record.event_log_entry
        evaluation = entry.dagster_event.event_specific_data
        if evaluation.passed or evaluation.asset_key not in WATCHED_CHECKS:
            context.update_cursor(str(record.storage_id))
            continue
        partition = getattr(evaluation, "partition", None) or entry.dagster_event.partition
        alert = check_failure_alert_for(evaluation, entry.run_id, partition)
        try:
            deliver(alert, cfg)
            sent += 1
        except AlertDeliveryError as exc:
            problems.append(str(exc))
        context.update_cursor(str(record.storage_id))
    if problems:
        raise AlertDeliveryError("; ".join(problems))
    return SkipReason(f"{sent} failed check(s) alerted" if sent else "no failed checks")


ALERT_SENSORS: list[SensorDefinition] = [run_failure_alert, check_failure_alert]
