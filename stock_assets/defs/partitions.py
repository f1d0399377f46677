"""Partitions definitions shared by the assets.

Assets are declared at module level with the default `trading_days` (the sample source's start);
the code location re-times them to the configured start and time zone (`retimed`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from dagster import AssetsDefinition, DynamicPartitionsDefinition, TimeWindowPartitionsDefinition

PARTITION_FMT = "%Y-%m-%d"

# One per retraining, keyed by cutoff session: `2017-12-29`, then `2017-12-29.r2`.
dataset_runs_partitions = DynamicPartitionsDefinition(name="dataset_runs")


def trading_days_partitions(
    start: str, timezone: str, end: dt.date | None = None
) -> TimeWindowPartitionsDefinition:
    """Weekday partitions in the exchange's time zone, up to `end` (a historical source's last
    day: the UI shows no partition the source can never fill) or, for a live source, today.

    `end_offset=1` makes a session's own partition exist once it has closed: without it a
    schedule firing at 18:30 on 2018-12-31 targets 2018-12-28 (docs/architecture.md).
    """
    dt.datetime.strptime(start, PARTITION_FMT)  # a clear error for a malformed start date
    return TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5",
        start=start,
        end=(end + dt.timedelta(days=1)).isoformat() if end else None,
        fmt=PARTITION_FMT,
        timezone=timezone,
        end_offset=1,
    )


trading_days = trading_days_partitions("1999-01-04", "America/New_York")


def retimed(
    assets: Sequence[AssetsDefinition], partitions_def: TimeWindowPartitionsDefinition
) -> list[AssetsDefinition]:
    """The same assets on another trading_days definition (start and time zone)."""
    return [
        a.map_asset_specs(lambda spec: spec.replace_attributes(partitions_def=partitions_def))
        if isinstance(a.partitions_def, TimeWindowPartitionsDefinition)
        else a
        for a in assets
    ]
