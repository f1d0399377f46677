"""raw_prices (as traded) and corporate_actions (splits and dividends on their ex-dates): one
ingestion step, one trading_days partition per weekday.

No `from __future__ import annotations` here: Dagster reads the context and resource hints.
"""

import datetime as dt
from collections.abc import Iterator

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetOut,
    BackfillPolicy,
    MetadataValue,
    Output,
    RetryRequested,
    asset_check,
    multi_asset,
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
from stock_assets.market.ingest import collect_prices, partition_notes, split_collected
from stock_assets.market.quality import (
    BLOCKING_JUMPS,
    calendar_gaps,
    ohlc_violations,
    price_jumps,
    restatement_message,
    restatements,
)
from stock_assets.market.sources import PriceSource
from stock_assets.ml.charts import price_chart_markdown
from stock_assets.storage import prices as stored
from stock_assets.storage.schema import CORPORATE_ACTIONS, RAW_PRICES

RAW = AssetKey(RAW_PRICES.name)
ACTIONS = AssetKey(CORPORATE_ACTIONS.name)


class RestatedHistory(ValueError):
    """The source reports stored sessions in another basis: nothing is written."""


@multi_asset(
    name="raw_prices",
    group_name="ingestion",
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    can_subset=True,  # `dg launch --assets raw_prices` alone still records the days' actions
    outs={
        RAW_PRICES.name: AssetOut(
            is_required=False,
            io_manager_key="postgres_io",
            metadata=RAW_PRICES.metadata(),
            kinds={"pandas", "postgres"},
            description="OHLC and volume per session and ticker, as traded (never in a later "
            "basis). A weekday the exchange was closed is an empty partition.",
        ),
        CORPORATE_ACTIONS.name: AssetOut(
            is_required=False,
            io_manager_key="postgres_io",
            metadata=CORPORATE_ACTIONS.metadata(),
            kinds={"pandas", "postgres"},
            description="Splits (new shares per old) and cash dividends on their ex-dates, with "
            "when the platform learned of them; `adjusted_prices` applies them point in time.",
        ),
    },
    check_specs=[
        AssetCheckSpec(
            "ohlc_consistent",
            asset=RAW,
            blocking=True,
            description="high ≥ max(open, close), low ≤ min(open, close), prices > 0, "
            "volume ≥ 0, no NaN.",
        ),
        AssetCheckSpec(
            "price_jumps",
            asset=RAW,
            blocking=True,
            description="Day-over-day changes beyond ±20 %, judged on the total return with "
            "the day's actions: an action that explains the move passes, a real move is "
            "metadata, a split-like ratio no action explains or a 50× ratio fails.",
        ),
    ],
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
    with stocks_db.connect() as conn:
        previous = stored.last_rows_before(conn, first, tickers)
        overlap = stored.last_sessions_before(conn, first, operations.overlap_sessions)
        kept = stored.stored_bars(conn, tickers, overlap[0], first) if overlap else None
    start = overlap[0] if overlap else first
    frame = _collect(context, operations, source, tickers, (start, last), market.exchange)
    if kept is not None and len(restated := restatements(frame[frame.trade_date < first], kept)):
        raise RestatedHistory(restatement_message(restated))  # before anything is written
    bars, actions = split_collected(frame[frame["trade_date"] >= first])
    if ACTIONS in context.selected_asset_keys:
        yield Output(actions, output_name=CORPORATE_ACTIONS.name)
    else:  # stored bars are only readable with their days' actions: record them regardless
        with stocks_db.connect() as conn:
            stored.write_actions(conn, actions, first, last)
    if RAW in context.selected_asset_keys:
        sessions = set(sessions_between(first, last, market.exchange))
        _partition_metadata(context, keys, bars, len(tickers), sessions, market)
        basis = MetadataValue.json({t: source.basis(t) for t in tickers})
        yield Output(bars, output_name=RAW_PRICES.name, metadata={"basis": basis})
        checks = context.selected_asset_check_keys
        for result in price_checks(bars, previous, actions):
            if AssetCheckKey(RAW, result.check_name) in checks:
                yield result


def _collect(
    context: AssetExecutionContext,
    operations: OperationsConfig,
    source: PriceSource,
    tickers: list[str],
    span: tuple[dt.date, dt.date],
    exchange: str,
) -> pd.DataFrame:
    """The source's rows for the span; late data or an outage retries with back-off."""
    try:
        return collect_prices(source, tickers, span[0], span[1], exchange)
    except Exception as exc:
        if context.retry_number >= operations.ingest_retries:
            raise
        wait = operations.ingest_retry_seconds * 2**context.retry_number
        raise RetryRequested(operations.ingest_retries, seconds_to_wait=wait) from exc


def _partition_metadata(context, keys, bars, n_tickers, sessions, market) -> None:
    chart = {}
    if len(keys) <= market.chart_max_partitions and not bars.empty:
        title = f"raw_prices {keys[0]} … {keys[-1]}"
        chart = {"price_chart": MetadataValue.md(price_chart_markdown(bars, title))}
    for key, note in partition_notes(keys, bars, n_tickers, sessions, market.exchange).items():
        context.add_asset_metadata({**note, **chart}, asset_key=RAW, partition_key=key)


def price_checks(
    bars: pd.DataFrame, previous: pd.DataFrame, actions: pd.DataFrame
) -> Iterator[AssetCheckResult]:
    """The in-step checks of a run's rows (and each ticker's stored day before them)."""
    bad = ohlc_violations(bars)
    yield AssetCheckResult(
        asset_key=RAW,
        check_name="ohlc_consistent",
        passed=bad.empty,
        severity=AssetCheckSeverity.ERROR,
        metadata={"violations": len(bad), "examples": frame_md(bad)},
    )
    jumps = price_jumps(bars, previous, actions)
    count = jumps["kind"].value_counts()
    yield AssetCheckResult(
        asset_key=RAW,
        check_name="price_jumps",
        passed=not any(count.get(k, 0) for k in BLOCKING_JUMPS),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "splits_explained": int(count.get("split", 0)),
            "moves": int(count.get("move", 0)),
            "unrecorded_splits": int(count.get("unrecorded_split", 0)),
            "unit_errors": int(count.get("unit_error", 0)),
            "jumps": frame_md(jumps),
        },
    )


@asset_check(
    asset=RAW,
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
