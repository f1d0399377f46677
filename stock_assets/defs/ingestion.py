"""raw_prices: daily prices for the configured tickers, one trading_days partition per weekday.

No `from __future__ import annotations` here: Dagster reads the context and resource hints.
"""

import datetime as dt
from collections.abc import Iterator

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MetadataValue,
    Output,
    ResourceParam,
    RetryPolicy,
    TimeWindowPartitionsDefinition,
    asset,
    asset_check,
)

from stock_assets.defs.resources import MarketResource, PostgresResource
from stock_assets.market.calendars import sessions_between
from stock_assets.market.ingest import collect_prices
from stock_assets.market.quality import calendar_gaps, ohlc_violations, price_jumps
from stock_assets.market.sources.base import PriceSource
from stock_assets.ml.charts import price_chart_markdown
from stock_assets.storage import prices as stored

RAW_PRICES_METADATA = {"partition_column": "trade_date", "primary_key": ["trade_date", "ticker"]}


def _table_md(frame: pd.DataFrame, limit: int = 20) -> MetadataValue:
    shown = frame.head(limit).astype(str)
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in shown.itertuples(index=False)]
    if len(frame) > limit:
        lines.append(f"\n… {len(frame) - limit} more")
    return MetadataValue.md("\n".join(lines))


def build_raw_prices(
    partitions_def: TimeWindowPartitionsDefinition, retry_policy: RetryPolicy | None = None
) -> AssetsDefinition:
    @asset(
        name="raw_prices",
        group_name="ingestion",
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        retry_policy=retry_policy,
        io_manager_key="postgres_io",
        metadata=RAW_PRICES_METADATA,
        kinds={"pandas", "postgres"},
        check_specs=[
            AssetCheckSpec(
                "ohlc_consistent",
                asset="raw_prices",
                blocking=True,
                description="high ≥ max(open, close), low ≤ min(open, close), prices > 0, "
                "volume ≥ 0, no NaN.",
            ),
            AssetCheckSpec(
                "price_jumps",
                asset="raw_prices",
                blocking=True,
                description="Close-to-close moves beyond ±40 %: a split the adjusted close "
                "explains passes, a genuine move warns, a 50× ratio without a split fails.",
            ),
        ],
        description="Raw OHLC, adjusted close, volume, dividends and splits per session and "
        "ticker. A weekday the exchange was closed is an empty partition.",
    )
    def raw_prices(
        context: AssetExecutionContext,
        price_source: ResourceParam[PriceSource],
        market: MarketResource,
        stocks_db: PostgresResource,
    ) -> Iterator[Output | AssetCheckResult]:
        keys = context.partition_keys
        window = context.partition_time_window
        first = window.start.date()
        last = window.end.date() - dt.timedelta(days=1)
        tickers = market.ticker_list()
        frame = collect_prices(price_source, tickers, first, last, market.exchange)
        with stocks_db.connect() as conn:
            previous = stored.last_rows_before(conn, first, tickers)

        by_day = frame.groupby("trade_date").size()
        sessions = set(sessions_between(first, last, market.exchange))
        chart_frame = frame if len(keys) <= market.chart_max_partitions else None
        for key in keys:
            day = dt.date.fromisoformat(key)
            metadata = {
                "rows": int(by_day.get(day, 0)),
                "tickers": len(tickers),
                "exchange_open": day in sessions,
            }
            if day not in sessions:
                metadata["note"] = f"{market.exchange} was closed: empty partition"
            if chart_frame is not None and not chart_frame.empty:
                metadata["price_chart"] = MetadataValue.md(
                    price_chart_markdown(chart_frame, f"raw_prices {keys[0]} … {keys[-1]}")
                )
            context.add_asset_metadata(metadata, partition_key=key)
        context.log.info(
            f"{len(frame)} rows for {len(tickers)} tickers over {len(keys)} partitions "
            f"({len(sessions)} sessions) from {price_source.name}"
        )
        yield Output(frame)

        bad = ohlc_violations(frame)
        yield AssetCheckResult(
            check_name="ohlc_consistent",
            passed=bad.empty,
            severity=AssetCheckSeverity.ERROR,
            metadata={"violations": len(bad), "examples": _table_md(bad)},
        )
        jumps = price_jumps(frame, previous)
        moves = jumps[jumps["kind"] == "move"]
        units = jumps[jumps["kind"] == "unit_error"]
        yield AssetCheckResult(
            check_name="price_jumps",
            passed=moves.empty and units.empty,
            severity=AssetCheckSeverity.ERROR if len(units) else AssetCheckSeverity.WARN,
            metadata={
                "splits_explained": int((jumps["kind"] == "split").sum()),
                "genuine_moves": len(moves),
                "unit_errors": len(units),
                "jumps": _table_md(jumps),
            },
        )

    return raw_prices


def build_calendar_complete(raw_prices: AssetsDefinition):
    @asset_check(
        asset=raw_prices,
        name="calendar_complete",
        blocking=True,
        description="Every session of the exchange calendar between the first and last stored "
        "day has a row for every configured ticker.",
    )
    def calendar_complete(
        context: AssetCheckExecutionContext, market: MarketResource, stocks_db: PostgresResource
    ) -> AssetCheckResult:
        tickers = market.ticker_list()
        with stocks_db.connect() as conn:
            span = stored.stored_span(conn)
            keys = stored.stored_keys(conn, tickers) if span else None
        if span is None or keys is None:
            return AssetCheckResult(passed=True, metadata={"stored_rows": 0})
        sessions = sessions_between(span[0], span[1], market.exchange)
        gaps = calendar_gaps(keys, sessions, tickers)
        per_ticker = gaps.groupby("ticker").size().to_dict() if len(gaps) else {}
        return AssetCheckResult(
            passed=gaps.empty,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "span": f"{span[0]} … {span[1]}",
                "sessions": len(sessions),
                "missing_rows": len(gaps),
                "missing_by_ticker": MetadataValue.json(per_ticker),
                "missing": _table_md(gaps),
            },
        )

    return calendar_complete
