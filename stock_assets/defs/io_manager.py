"""Dagster IO manager: each asset is a table in `stocks`, each partition a slice of it.

An asset names its partition column (and optionally a primary key) in its definition metadata:
`{"partition_column": "trade_date", "primary_key": ["trade_date", "ticker"]}`. A write replaces
exactly the slice of the partitions in the run — one key, a range from a single-run backfill, or
the whole table for unpartitioned assets — in one transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from dagster import (
    ConfigurableIOManager,
    InputContext,
    OutputContext,
    TimeWindowPartitionsDefinition,
)

from stock_assets.defs.resources import PostgresResource
from stock_assets.storage.prices import ensure_adjusted_view
from stock_assets.storage.schema import CORPORATE_ACTIONS, RAW_PRICES
from stock_assets.storage.writer import Slice, read_slice, replace_slice

ADJUSTED_FROM = (RAW_PRICES.name, CORPORATE_ACTIONS.name)


def table_name(context: InputContext | OutputContext) -> str:
    return "_".join(context.asset_key.path)


def _bound(value: dt.datetime) -> dt.date | dt.datetime:
    # Daily windows start at local midnight: compare with the DATE column as local dates.
    return value.date() if value.timetz().replace(tzinfo=None) == dt.time(0) else value


def partition_slice(context: InputContext | OutputContext, column: str | None) -> Slice:
    if not context.has_asset_partitions:
        return Slice()
    if column is None:
        raise ValueError(
            f"asset {context.asset_key.to_user_string()} is partitioned but names no "
            "'partition_column' in its metadata"
        )
    if isinstance(context.asset_partitions_def, TimeWindowPartitionsDefinition):
        window = context.asset_partitions_time_window
        return Slice(column, start=_bound(window.start), end=_bound(window.end))
    return Slice(column, keys=tuple(context.asset_partition_keys))


class PostgresPandasIOManager(ConfigurableIOManager):
    """Pandas frames as Postgres tables, one slice per partition; no pickles."""

    db: PostgresResource

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; "
                "the Postgres IO manager stores pandas DataFrames"
            )
        metadata = context.definition_metadata or {}
        where = partition_slice(context, metadata.get("partition_column"))
        table = table_name(context)
        with self.db.connect() as conn:
            rows = replace_slice(
                conn,
                table,
                obj,
                where,
                metadata.get("primary_key"),
                self.db.timeouts(),
                added=tuple((metadata.get("added_columns") or {}).items()),
                indexes=[tuple(c) for c in metadata.get("indexes") or ()],
            )
            if table in ADJUSTED_FROM:  # the view over prices and actions, once they exist
                ensure_adjusted_view(conn)
        context.log.debug(f"replaced {where} of {table} with {rows} rows")

    def load_input(self, context: InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        metadata = (upstream.definition_metadata if upstream else None) or {}
        column = metadata.get("partition_column")
        where = partition_slice(context, column)
        order = list(metadata.get("primary_key") or ([column] if column else []))
        with self.db.connect() as conn:
            return read_slice(conn, table_name(context), where, order_by=order)
