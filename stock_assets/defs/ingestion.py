"""raw_prices (as traded) and corporate_actions (splits and dividends on their ex-dates): one
ingestion step, one trading_days partition per weekday.

No `from __future__ import annotations` here: Dagster reads the context and resource hints.
"""

import datetime as dt
import time
from collections.abc import Iterator, Mapping

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
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from stock_assets.defs.metadata import frame_md
from stock_assets.defs.partition_metadata import add_partition_metadata
from stock_assets.defs.partitions import trading_days
from stock_assets.defs.resources import (
    MarketResource,
    OperationsConfig,
    PostgresResource,
    PriceSourceResource,
)
from stock_assets.market.calendars import require_closed, sessions_between
from stock_assets.market.ingest import Collected, collect_prices, partition_notes, split_collected
from stock_assets.market.quality import calendar_gaps, restatement_message, restatements
from stock_assets.market.sources import PriceSource, SourceUnavailable
from stock_assets.market.validation import (
    JUMP_RULES,
    ROW_RULES,
    Validated,
    missing_keys,
    missing_shares,
    validate,
)
from stock_assets.ml.charts import price_chart_markdown
from stock_assets.storage import prices as stored
from stock_assets.storage.schema import (
    CORPORATE_ACTIONS,
    MISSING_COLUMNS,
    RAW_PRICES,
    REJECTED_COLUMNS,
)

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
            description="Rows breaking a row rule — NaN/blank or infinite cell, price ≤ 0, "
            "high < max(open, close), low > min(open, close), volume < 0, duplicate key — are "
            "kept out of raw_prices (in raw_prices_rejected); this warns, listing them.",
        ),
        AssetCheckSpec(
            "price_jumps",
            asset=RAW,
            description="Day-over-day changes beyond ±20 %, judged on the total return with "
            "the day's actions: an action that explains the move passes, a real move is "
            "metadata, a split-like ratio no action explains or a 50× ratio is kept out of "
            "raw_prices (in raw_prices_rejected) and warns.",
        ),
        AssetCheckSpec(
            "tickers_complete",
            asset=RAW,
            blocking=True,
            description="Every session has a stored row for every configured ticker. Missing "
            "or rejected tickers warn; more than STOCK_ASSETS_MAX_MISSING_SHARE of them in a "
            "session (a systemic outage) blocks downstream.",
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
    if source.live:
        settle = dt.timedelta(minutes=market.settle_minutes)
        require_closed(last, market.exchange, settle, dt.datetime.now(dt.UTC))
    with stocks_db.connect() as conn:
        previous = stored.last_rows_before(conn, first, tickers)
        overlap = stored.last_sessions_before(conn, first, operations.overlap_sessions)
        kept = stored.stored_bars(conn, tickers, overlap[0], first) if overlap else None
    start = overlap[0] if overlap else first
    collected = _collect(context, operations, source, tickers, (start, last), market.exchange)
    frame = collected.frame
    if kept is not None and len(restated := restatements(frame[frame.trade_date < first], kept)):
        raise RestatedHistory(restatement_message(restated))  # before anything is written
    checked = validate(frame[frame["trade_date"] >= first], previous)  # before anything too
    unanswered = collected.missing[collected.missing["trade_date"] >= first]
    missing = missing_keys(unanswered, checked.rejected, checked.good)
    sessions = sorted(sessions_between(first, last, market.exchange))
    shares = missing_shares(missing, sessions, len(tickers))
    if max(shares.values(), default=0.0) > operations.max_missing_share:
        worst = max(shares, key=lambda day: shares[day])
        first_reason = missing.loc[missing["trade_date"] == worst, "reason"].iloc[0]
        _retry_if_left(  # a systemic outage or late data: try again later
            context,
            operations,
            f"{shares[worst]:.0%} of tickers missing on {worst} (e.g. {first_reason})",
        )
    bars, actions, missing = _rows_to_write(stocks_db, checked, missing, (first, last))
    shares = missing_shares(missing, sessions, len(tickers))
    with stocks_db.connect() as conn:  # every table of the run's days in one transaction
        rejected = rejected_rows(checked.rejected, context.run_id)
        gaps = missing_rows(missing, context.run_id)
        timeouts = stocks_db.timeouts()
        stored.write_ingest(conn, first, last, bars, actions, rejected, gaps, timeouts)
    # Written above, so the IO manager is handed None: the outputs only record materializations.
    if ACTIONS in context.selected_asset_keys:
        yield Output(None, output_name=CORPORATE_ACTIONS.name, metadata={"rows": len(actions)})
    if RAW in context.selected_asset_keys:
        _partition_metadata(context, keys, bars, missing, len(tickers), set(sessions), market)
        basis = MetadataValue.json({t: source.basis(t) for t in tickers})
        yield Output(None, output_name=RAW_PRICES.name, metadata={"basis": basis})
        checks = context.selected_asset_check_keys
        for result in price_checks(checked, missing, shares, operations.max_missing_share):
            if AssetCheckKey(RAW, result.check_name) in checks:
                yield result


def _collect(
    context: AssetExecutionContext,
    operations: OperationsConfig,
    source: PriceSource,
    tickers: list[str],
    span: tuple[dt.date, dt.date],
    exchange: str,
) -> Collected:
    """The source's rows for the span. An outage of the whole source retries with back-off; a
    request it cannot answer (outside its data, unknown ticker, bad file) fails at once."""
    try:
        return collect_prices(source, tickers, span[0], span[1], exchange)
    except SourceUnavailable as exc:
        _retry_if_left(context, operations, f"{exc}")
        raise


def _retry_if_left(context: AssetExecutionContext, operations: OperationsConfig, why: str) -> None:
    """Wait with back-off, then ask Dagster for a retry, while retries are left (late data,
    outages). The wait happens here, in the step, not in Dagster's retry scheduler: that one
    sleeps with interrupts captured, so Ctrl-C, SIGTERM and a run's termination would only take
    effect when the wait ended (up to hours); here they stop the step at once."""
    if context.retry_number >= operations.ingest_retries:
        return
    wait = operations.ingest_retry_seconds * 2**context.retry_number
    context.log.warning(
        f"waiting {wait} s for the source before retry {context.retry_number + 1} of "
        f"{operations.ingest_retries} (Ctrl-C or terminating the run stops now): {why}"
    )
    time.sleep(wait)
    raise RetryRequested(operations.ingest_retries, seconds_to_wait=0)


def _rows_to_write(
    stocks_db: PostgresResource,
    checked: Validated,
    missing: pd.DataFrame,
    span: tuple[dt.date, dt.date],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Bars and actions to write, and the keys still missing after that: a rejected or
    unanswered (session, ticker) keeps its stored row."""
    bars, actions = split_collected(checked.good)
    with stocks_db.connect() as conn:
        kept_bars, kept_actions = stored.stored_rows_at(conn, missing, *span)
    missing = _not_in(missing, kept_bars)
    return _with_kept(bars, kept_bars), _with_kept(actions, kept_actions), missing


def _with_kept(fresh: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    if kept.empty:
        return fresh
    return pd.concat([fresh, kept[fresh.columns]], ignore_index=True)


def _not_in(missing: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    """The missing keys that have no stored row left in place."""
    have = pd.MultiIndex.from_frame(kept[["trade_date", "ticker"]])
    return missing[~pd.MultiIndex.from_frame(missing[["trade_date", "ticker"]]).isin(have)]


def _partition_metadata(context, keys, bars, missing, n_tickers, sessions, market) -> None:
    chart = {}
    # a line needs two sessions: one point per ticker says nothing (and cost the daily cycle
    # a matplotlib import and a render)
    if len(keys) <= market.chart_max_partitions and bars["trade_date"].nunique() > 1:
        title = f"raw_prices {keys[0]} … {keys[-1]}"
        chart = {"price_chart": MetadataValue.md(price_chart_markdown(bars, title))}
    notes = partition_notes(keys, bars, missing, n_tickers, sessions, market.exchange)
    add_partition_metadata(context, {k: {**note, **chart} for k, note in notes.items()}, RAW)


def rejected_rows(rejected: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """raw_prices_rejected rows: the values as fetched, the rule, the run and when."""
    out = rejected.assign(run_id=run_id, rejected_at=rejected["ingested_at"])
    out["volume"] = out["volume"].astype("float64")
    return out[list(REJECTED_COLUMNS)]


def missing_rows(missing: pd.DataFrame, run_id: str) -> pd.DataFrame:
    now = pd.Timestamp.now(tz="UTC")
    return missing.assign(run_id=run_id, recorded_at=now)[list(MISSING_COLUMNS)]


def price_checks(
    checked: Validated,
    missing: pd.DataFrame,
    shares: dict[dt.date, float],
    max_share: float,
) -> Iterator[AssetCheckResult]:
    """The in-step checks: what validation kept out, and how many tickers each session lacks."""
    rejected = checked.rejected
    by_row_rule = rejected[rejected["rule"].isin(ROW_RULES)]
    shown = ["trade_date", "ticker", "rule", "detail"]
    yield AssetCheckResult(
        asset_key=RAW,
        check_name="ohlc_consistent",
        passed=by_row_rule.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "rejected": len(by_row_rule),
            "rules": MetadataValue.json(by_row_rule["rule"].value_counts().to_dict()),
            "examples": frame_md(by_row_rule[shown]),
        },
    )
    by_ratio = rejected[rejected["rule"].isin(JUMP_RULES.values())]
    count = checked.moves["kind"].value_counts()
    yield AssetCheckResult(
        asset_key=RAW,
        check_name="price_jumps",
        passed=by_ratio.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "splits_explained": int(count.get("split", 0)),
            "moves": int(count.get("move", 0)),
            "unrecorded_splits": int((by_ratio["rule"] == JUMP_RULES["unrecorded_split"]).sum()),
            "unit_errors": int((by_ratio["rule"] == JUMP_RULES["unit_error"]).sum()),
            "jumps": frame_md(checked.moves),
            "rejected": frame_md(by_ratio[shown]),
        },
    )
    worst = max(shares.values(), default=0.0)
    yield AssetCheckResult(
        asset_key=RAW,
        check_name="tickers_complete",
        passed=missing.empty,
        severity=AssetCheckSeverity.ERROR if worst > max_share else AssetCheckSeverity.WARN,
        metadata={
            "missing_rows": len(missing),
            "worst_session_share": MetadataValue.float(round(worst, 4)),
            "max_missing_share": MetadataValue.float(max_share),
            "missing_tickers": MetadataValue.json(
                missing.groupby("ticker")["reason"].first().to_dict()
            ),
            "missing": frame_md(missing),
        },
    )


@asset_check(
    asset=RAW,
    name="calendar_complete",
    blocking=True,
    description="Every session the run wrote (the audit_prices job: every session between "
    "the first and last stored day) has a row for every configured ticker, or a recorded "
    "reason in raw_prices_missing (a ticker kept out by validation or not answered). An "
    "unexplained gap blocks.",
)
def calendar_complete(
    context: AssetCheckExecutionContext, market: MarketResource, stocks_db: PostgresResource
) -> AssetCheckResult:
    tickers = market.ticker_list()
    with stocks_db.connect() as conn:
        stored_span = stored.stored_span(conn)
        span = _checked_span(context.op_execution_context.run.tags, stored_span)
        keys = stored.stored_keys(conn, tickers, span) if span else None
        recorded = stored.missing_since(conn, span[0]) if span else None
    if span is None or keys is None or recorded is None:
        return AssetCheckResult(passed=True, metadata={"stored_rows": 0})
    sessions = sessions_between(span[0], span[1], market.exchange)
    gaps = calendar_gaps(keys, sessions, tickers)
    known = pd.MultiIndex.from_frame(recorded[["trade_date", "ticker"]])
    explained = pd.MultiIndex.from_frame(gaps[["trade_date", "ticker"]]).isin(known)
    unexplained = gaps[~explained]
    return AssetCheckResult(
        passed=unexplained.empty,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "span": f"{span[0]} … {span[1]}",
            "sessions": len(sessions),
            "missing_rows": len(unexplained),
            "recorded_missing_rows": int(explained.sum()),
            "missing_by_ticker": MetadataValue.json(
                unexplained.groupby("ticker").size().to_dict() if len(unexplained) else {}
            ),
            "missing": frame_md(unexplained),
        },
    )


def _checked_span(
    tags: Mapping[str, str], stored_span: tuple[dt.date, dt.date] | None
) -> tuple[dt.date, dt.date] | None:
    """The sessions a run's check reads: the partitions it wrote (a daily run: one day, not
    the whole history every day); a run without partitions (audit_prices) reads all."""
    if stored_span is None:
        return None
    if PARTITION_NAME_TAG in tags:
        first = last = dt.date.fromisoformat(tags[PARTITION_NAME_TAG])
    elif ASSET_PARTITION_RANGE_START_TAG in tags:
        first = dt.date.fromisoformat(tags[ASSET_PARTITION_RANGE_START_TAG])
        last = dt.date.fromisoformat(tags[ASSET_PARTITION_RANGE_END_TAG])
    else:
        return stored_span
    first, last = max(first, stored_span[0]), min(last, stored_span[1])
    return (first, last) if first <= last else None
