"""`stock-assets restate`: re-ingest one ticker's history from the source after a vendor
restatement or an unrecorded split, one transaction per trading day, and name the dataset runs
whose data changed (their cutoff is on or after the first restated day)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from stock_assets.market.calendars import sessions_between
from stock_assets.market.ingest import collect_prices, split_collected
from stock_assets.market.sources import PriceSource
from stock_assets.market.validation import validate
from stock_assets.runtime.postgres import connect, ready_server
from stock_assets.settings import Settings
from stock_assets.storage import prices as stored
from stock_assets.storage.writer import query_frame, table_exists


@dataclass
class Restated:
    ticker: str
    first: dt.date
    last: dt.date
    rows: int
    actions: int
    affected_runs: list[str]


def restate(
    settings: Settings, source: PriceSource, ticker: str, start: dt.date, end: dt.date | None = None
) -> Restated:
    conn = connect(ready_server(settings).for_db("stocks"))
    try:
        span = stored.stored_span(conn)
        if span is None:
            raise ValueError("raw_prices is empty: nothing to restate")
        end = end or span[1]
        if end < start:
            raise ValueError(f"--start {start} is after the newest stored session {end}")
        collected = collect_prices(source, [ticker], start, end, settings.market.exchange)
        if len(collected.missing):
            first = collected.missing.iloc[0]
            raise ValueError(
                f"{ticker}: the source has no row for {len(collected.missing)} session(s), e.g. "
                f"{first.trade_date} ({first.reason}); nothing was restated"
            )
        checked = validate(collected.frame, stored.last_rows_before(conn, start, [ticker]))
        if len(checked.rejected):
            bad = checked.rejected.iloc[0]
            raise ValueError(
                f"{ticker}: {len(checked.rejected)} fetched row(s) break a rule, e.g. "
                f"{bad.trade_date}: {bad.rule} ({bad.detail}); nothing was restated"
            )
        bars, actions = split_collected(checked.good)
        days = sessions_between(start, end, settings.market.exchange)
        rows = stored.replace_ticker_days(conn, ticker, days, bars, actions)
        runs = []
        if table_exists(conn, "dataset_runs"):
            runs = query_frame(
                conn,
                "SELECT dataset_run_id FROM dataset_runs WHERE cutoff >= %s ORDER BY cutoff",
                (start,),
            )["dataset_run_id"].tolist()
    finally:
        conn.close()
    return Restated(ticker, start, end, rows, len(actions), runs)
