"""Alert sensors: a failed run anywhere in the instance, and a failed check on raw_prices or
candidate_model, become an email and/or a webhook call (`stock_assets.runtime.alerts`).

Both default to RUNNING: with no channel configured an alert is only logged, so nothing needs
setting up on a laptop. Both read the instance's event log after their cursor, so a run launched
by the CLI in its own process alerts like one the daemon launched. A channel that fails keeps
its alert in the cursor (`Outbox`) and gets it again on later ticks with back-off; the tick says
so, and each channel delivers each alert once.

No `from __future__ import annotations` here: Dagster reads the context hints.
"""

import json
import time
from collections.abc import Callable

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
    EventLogRecord,
    EventRecordsFilter,
    RunStatusChangeRecordsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from stock_assets.defs.resources import AlertChannels
from stock_assets.runtime.alerts import Alert, Outbox

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


def _run_failure(instance: DagsterInstance, record: EventLogRecord) -> tuple[str, Alert]:
    entry = record.event_log_entry
    run = instance.get_run_by_id(entry.run_id)
    failures = instance.all_logs(entry.run_id, of_type=DagsterEventType.STEP_FAILURE)
    steps = [e.step_key for e in failures if e.step_key]
    messages = [
        _root_cause(data.error)
        for e in failures
        if (data := e.dagster_event.event_specific_data) and getattr(data, "error", None)
    ]
    if not messages and entry.dagster_event.message:
        messages = [entry.dagster_event.message]
    tags = dict(run.tags) if run else {}
    job = run.job_name if run else entry.job_name
    return f"run:{entry.run_id}", run_failure_alert_for(
        entry.run_id, job, tags, steps, "\n".join(messages)
    )


def _root_cause(error) -> str:
    """Dagster wraps a step's exception ('Error occurred while executing op …'): the alert
    says the exception itself, after the wrapper's line."""
    lines = [error.message.strip()]
    while error.cause is not None:
        error = error.cause
        lines.append(error.message.strip())
    return lines[0] if len(lines) == 1 else f"{lines[0]}\n  caused by: {lines[-1]}"


@sensor(
    name="run_failure_alert",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Mails and/or posts every failed run of the instance, whoever launched it.",
)
def run_failure_alert(context: SensorEvaluationContext, alerts: AlertChannels):
    return _alert_tick(context, alerts, DagsterEventType.RUN_FAILURE, "failed run", _run_failure)


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


def _check_failure(_: DagsterInstance, record: EventLogRecord) -> tuple[str, Alert] | None:
    entry = record.event_log_entry
    evaluation = entry.dagster_event.event_specific_data
    if evaluation.passed or evaluation.asset_key not in WATCHED_CHECKS:
        return None
    partition = getattr(evaluation, "partition", None) or entry.dagster_event.partition
    return f"check:{record.storage_id}", check_failure_alert_for(
        evaluation, entry.run_id, partition
    )


@sensor(
    name="check_failure_alert",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Mails and/or posts failed checks on raw_prices and candidate_model.",
)
def check_failure_alert(context: SensorEvaluationContext, alerts: AlertChannels):
    return _alert_tick(
        context, alerts, DagsterEventType.ASSET_CHECK_EVALUATION, "failed check", _check_failure
    )


def _alert_tick(
    context: SensorEvaluationContext,
    alerts: AlertChannels,
    event_type: DagsterEventType,
    what: str,
    alert_for: Callable[[DagsterInstance, EventLogRecord], tuple[str, Alert] | None],
) -> SkipReason:
    """Retry what is waiting, then alert on the events after the cursor; the cursor keeps both
    the last event seen and the alerts a channel has not delivered yet."""
    after, outbox = _parse(context.cursor)
    cfg = alerts.settings()
    if after is None:  # first tick: the recent past (a run that failed before the daemon ran,
        # e.g. one launched from the CLI), not the whole history
        since = time.time() - cfg.first_tick_hours * 3600
        older = _records(context.instance, event_type, None, 1, ascending=False, before=since)
        after = older[0].storage_id if older else 0
    problems = outbox.retry_due(cfg)
    records = _records(context.instance, event_type, after, limit=BATCH, ascending=True)
    sent = 0
    for record in records:
        made = alert_for(context.instance, record)
        after = record.storage_id
        if made is not None:
            sent += 1
            if problem := outbox.send(*made, cfg):
                problems.append(problem)
    context.update_cursor(_dump(after, outbox))  # kept: a failed tick would drop this cursor
    said = f"{sent} {what}(s) alerted" if sent else f"no {what}s"
    if problems:
        context.log.error("alert delivery: " + "; ".join(problems))
        waiting = f"{len(outbox.pending)} alert(s) waiting for a channel"
        return SkipReason(f"{said}; {waiting}: " + "; ".join(problems)[:2000])
    return SkipReason(said)


def _records(
    instance: DagsterInstance,
    event_type: DagsterEventType,
    after: int | None,
    limit: int,
    ascending: bool,
    before: float | None = None,
) -> list[EventLogRecord]:
    if event_type == DagsterEventType.RUN_FAILURE:  # run status events have their own query
        changes = RunStatusChangeRecordsFilter(
            event_type, after_storage_id=after, before_timestamp=before
        )
        return list(
            instance.fetch_run_status_changes(changes, limit=limit, ascending=ascending).records
        )
    events = EventRecordsFilter(event_type=event_type, after_cursor=after, before_timestamp=before)
    return list(instance.get_event_records(events, limit=limit, ascending=ascending))


def _parse(cursor: str | None) -> tuple[int | None, Outbox]:
    if not cursor:
        return None, Outbox()
    if cursor.isdigit():  # before alerts were retried: the last storage id alone
        return int(cursor), Outbox()
    state = json.loads(cursor)
    return state["after"], Outbox.from_json(state.get("pending"))


def _dump(after: int, outbox: Outbox) -> str:
    return json.dumps({"after": after, "pending": outbox.to_json()}, default=str)


ALERT_SENSORS: list[SensorDefinition] = [run_failure_alert, check_failure_alert]
