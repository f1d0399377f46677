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
    BackfillPolicy,
    MetadataValue,
    Output,
    RetryRequested,
    asset,
    asset_check,
)

from stock_assets.defs.metadata import frame_md
from stock_assets.defs.partitions import trading_days
from stock_assets.defs.resources import (
    MarketResource,
    OperationsConfig,
    PostgresResource,
    PriceSourceResource,
)
from stock_assets.market.calendars import sessions_between
from stock_assets.market.ingest import collect_prices, partition_notes
from stock_assets.market.quality import calendar_gaps, ohlc_violations, price_jumps
from stock_assets.ml.charts import price_chart_markdown
from stock_assets.storage import prices as stored
from stock_assets.storage.schema import RAW_PRICES


@asset(
    name="raw_prices",
    group_name="ingestion",
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key="postgres_io",
    metadata=RAW_PRICES.metadata(),
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
    price_source: PriceSourceResource,
    market: MarketResource,
    stocks_db: PostgresResource,
    operations: OperationsConfig,
) -> Iterator[Output | AssetCheckResult]:
    keys, window = context.partition_keys, context.partition_time_window
    first, last = window.start.date(), window.end.date() - dt.timedelta(days=1)
    tickers, source = market.ticker_list(), price_source.source()
    try:
        frame = collect_prices(source, tickers, first, last, market.exchange)
    except Exception as exc:  # late data or an outage: try again later, backing off
        if context.retry_number >= operations.ingest_retries:
            raise
        wait = operations.ingest_retry_seconds * 2**context.retry_number
        raise RetryRequested(operations.ingest_retries, seconds_to_wait=wait) from exc
    with stocks_db.connect() as conn:
        previous = stored.last_rows_before(conn, first, tickers)
    sessions = set(sessions_between(first, last, market.exchange))
    chart = None
    if len(keys) <= market.chart_max_partitions and not frame.empty:
        chart = MetadataValue.md(price_chart_markdown(frame, f"raw_prices {keys[0]} … {keys[-1]}"))
    for key, note in partition_notes(keys, frame, len(tickers), sessions, market.exchange).items():
        context.add_asset_metadata(
            {**note, "price_chart": chart} if chart else note, partition_key=key
        )
    context.log.info(
        f"{len(frame)} rows for {len(tickers)} tickers over {len(keys)} partitions "
        f"({len(sessions)} sessions) from {source.name}"
    )
    yield Output(frame)
    yield from price_checks(frame, previous)


def price_checks(frame: pd.DataFrame, previous: pd.DataFrame) -> Iterator[AssetCheckResult]:
    """The in-step checks of a run's rows (and each ticker's stored day before them)."""
    bad = ohlc_violations(frame)
    yield AssetCheckResult(
        check_name="ohlc_consistent",
        passed=bad.empty,
        severity=AssetCheckSeverity.ERROR,
        metadata={"violations": len(bad), "examples": frame_md(bad)},
    )
    jumps = price_jumps(frame, previous)
    moves, units = (jumps[jumps["kind"] == k] for k in ("move", "unit_error"))
    yield AssetCheckResult(
        check_name="price_jumps",
        passed=moves.empty and units.empty,
        severity=AssetCheckSeverity.ERROR if len(units) else AssetCheckSeverity.WARN,
        metadata={
            "splits_explained": int((jumps["kind"] == "split").sum()),
            "genuine_moves": len(moves),
            "unit_errors": len(units),
            "jumps": frame_md(jumps),
        },
    )


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
    return AssetCheckResult(
        passed=gaps.empty,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "span": f"{span[0]} … {span[1]}",
            "sessions": len(sessions),
            "missing_rows": len(gaps),
            "missing_by_ticker": MetadataValue.json(
                gaps.groupby("ticker").size().to_dict() if len(gaps) else {}
            ),
            "missing": frame_md(gaps),
        },
    )
