"""The after-close schedule of daily operations (every weekday: an exchange holiday is
materialized empty, as backfills and replays do) and the weekly audit of the stored history."""

from __future__ import annotations

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
)

from stock_assets.defs.jobs import audit_prices, daily_operations
from stock_assets.market.calendars import is_session

EXCHANGE_CLOSED_TAG = "stock_assets/exchange_closed"


def after_close(context: ScheduleEvaluationContext, exchange: str) -> RunRequest:
    """That weekday's partition. A holiday's run writes empty partitions (`exchange_open`
    false) in seconds; skipping it would leave the day 'missing' in the UI for ever."""
    day = context.scheduled_execution_time.date()
    key = day.isoformat()
    tags = {} if is_session(day, exchange) else {EXCHANGE_CLOSED_TAG: "true"}
    return RunRequest(run_key=key, partition_key=key, tags=tags)


def daily_after_close(timezone: str, exchange: str) -> ScheduleDefinition:
    """Weekdays at 18:30 in the exchange's time zone (settings, so built per code location)."""
    return ScheduleDefinition(
        name="daily_after_close",
        job=daily_operations,
        cron_schedule="30 18 * * 1-5",
        execution_fn=lambda context: after_close(context, exchange),
        execution_timezone=timezone,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Weekdays at 18:30 exchange time: that session's daily operations; an "
        "exchange holiday's partitions are materialized empty (exchange_open false).",
    )


def weekly_audit(timezone: str) -> ScheduleDefinition:
    """Saturdays at 06:00: calendar_complete over the whole history, which daily runs (their
    own sessions only) no longer read."""
    return ScheduleDefinition(
        name="weekly_price_audit",
        job=audit_prices,
        cron_schedule="0 6 * * 6",
        execution_timezone=timezone,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Saturdays at 06:00 exchange time: every stored session has every "
        "ticker's row or a recorded reason (audit_prices).",
    )
