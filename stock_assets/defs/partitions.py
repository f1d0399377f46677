"""Partitions definitions shared by the assets."""

from __future__ import annotations

import datetime as dt

from dagster import DynamicPartitionsDefinition, TimeWindowPartitionsDefinition

PARTITION_FMT = "%Y-%m-%d"

# One per retraining, keyed by cutoff session: `2017-12-29`, then `2017-12-29.r2`.
dataset_runs_partitions = DynamicPartitionsDefinition(name="dataset_runs")


def trading_days_partitions(start: str, timezone: str) -> TimeWindowPartitionsDefinition:
    """Weekday partitions in the exchange's time zone.

    `end_offset=1` makes a session's own partition exist once it has closed: without it a
    schedule firing at 18:30 on 2018-12-31 targets 2018-12-28 (DESIGN.md §2).
    """
    dt.datetime.strptime(start, PARTITION_FMT)  # a clear error for a malformed start date
    return TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5",
        start=start,
        fmt=PARTITION_FMT,
        timezone=timezone,
        end_offset=1,
    )
