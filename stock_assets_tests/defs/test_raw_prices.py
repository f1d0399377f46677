"""raw_prices and its checks under real Dagster execution on the embedded Postgres."""

import datetime as dt
from pathlib import Path

import pandas as pd
import psycopg2
import pytest
from dagster import AssetKey, DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.definitions import build_definitions
from stock_assets.market.sources import CsvSource, SyntheticSource
from stock_assets.settings import load_settings
from stock_assets_tests.conftest import query

SYN = SyntheticSource(seed=5, n_tickers=3, start=dt.date(2023, 12, 1), end=dt.date(2024, 3, 28))


def _job(source, start: str, tickers=None):
    settings = load_settings().with_market(start_date=start, tickers=tickers)
    return build_definitions(settings, source=source).resolve_job_def("ingest_prices")


def _run(job, first: str, last: str | None = None, instance=None):
    tags = {}
    kwargs = {"partition_key": first} if last is None else {}
    if last is not None:
        tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
    return job.execute_in_process(
        instance=instance or DagsterInstance.ephemeral(), tags=tags, raise_on_error=False, **kwargs
    )


def _checks(result) -> dict[str, tuple[bool, str]]:
    return {
        e.check_name: (e.passed, e.severity.value) for e in result.get_asset_check_evaluations()
    }


def test_backfill_with_holidays_writes_sessions_and_labels_closed_days(stocks_url):
    instance = DagsterInstance.ephemeral()
    result = _run(_job(SYN, "2023-12-01"), "2024-01-01", "2024-01-19", instance)
    assert result.success
    assert query(stocks_url, "SELECT count(*), count(DISTINCT trade_date) FROM raw_prices") == [
        (3 * 13, 13)
    ]
    assert _checks(result) == {
        "ohlc_consistent": (True, "WARN"),
        "price_jumps": (True, "WARN"),
        "tickers_complete": (True, "WARN"),
        "calendar_complete": (True, "ERROR"),
    }
    records = instance.fetch_materializations(AssetKey("raw_prices"), limit=100).records
    metadata = {r.partition_key: r.asset_materialization.metadata for r in records}
    assert len(metadata) == 15  # 15 weekdays, 13 sessions
    assert metadata["2024-01-15"]["exchange_open"].value is False
    assert metadata["2024-01-15"]["rows"].value == 0
    assert metadata["2024-01-16"]["rows"].value == 3
    assert "price_chart" not in metadata["2024-01-16"]  # 15 partitions: too many for charts


def test_small_run_gets_a_chart(stocks_url):
    instance = DagsterInstance.ephemeral()
    assert _run(_job(SYN, "2023-12-01"), "2024-01-16", "2024-01-17", instance).success
    record = instance.fetch_materializations(AssetKey("raw_prices"), limit=1).records[0]
    assert record.asset_materialization.metadata["price_chart"].value.startswith("![raw_prices")


def test_one_session_run_gets_no_chart(stocks_url):
    """One point per ticker is not a chart; drawing it cost the daily cycle a matplotlib
    import and a render."""
    instance = DagsterInstance.ephemeral()
    assert _run(_job(SYN, "2023-12-01"), "2024-01-16", "2024-01-16", instance).success
    record = instance.fetch_materializations(AssetKey("raw_prices"), limit=1).records[0]
    assert record.asset_materialization.metadata["rows"].value == 3
    assert "price_chart" not in record.asset_materialization.metadata


def _drop_raw_prices(url: str) -> None:
    with psycopg2.connect(url) as c, c.cursor() as cur:
        cur.execute("DROP TABLE raw_prices, corporate_actions CASCADE")


def _bokeh_csv(folder: Path, layout: str = "as traded") -> CsvSource:
    """Bokeh's AAPL: bars as traded, Adj Close, the 2:1 split of 2005-02-28 (−49.6 % as
    traded) and the crash of 2000-09-29 (−51.9 %, 3.8 % from a 2:1 ratio)."""
    from bokeh_sampledata.stocks import AAPL

    frame = pd.DataFrame(AAPL).rename(columns={"adj_close": "Adj Close"})
    if layout == "as traded":  # the split as an action: the file is as traded
        frame["Stock Splits"] = [2.0 if d == "2005-02-28" else 0.0 for d in frame["date"]]
    elif layout == "bars only":  # neither actions nor Adj Close: the split is just a ratio
        frame = frame.drop(columns="Adj Close")
    frame.to_csv(folder / "AAPL.csv", index=False)
    return CsvSource(folder)


def _jumps(result):
    evaluation = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "price_jumps"
    )
    return {k: v.value for k, v in evaluation.metadata.items()}


@pytest.mark.parametrize("layout", ["as traded", "adjusted by the file"])
def test_real_split_passes_and_real_crash_is_a_move(stocks_url, tmp_path, layout):
    job = _job(_bokeh_csv(tmp_path, layout), "2000-03-01")
    split = _run(job, "2005-02-22", "2005-03-04")
    assert split.success and _checks(split)["price_jumps"] == (True, "WARN")
    assert _jumps(split)["splits_explained"] == (1 if layout == "as traded" else 0)
    _drop_raw_prices(stocks_url)  # else the 2000…2005 gap fails calendar_complete
    crash = _run(job, "2000-09-25", "2000-10-03")
    assert crash.success and _checks(crash)["price_jumps"] == (True, "WARN")  # a real move
    jumps = _jumps(crash)
    assert jumps["moves"] == 1 and jumps["unrecorded_splits"] == 0
    assert "2000-09-29" in jumps["jumps"]


def test_split_like_ratio_without_an_action_blocks(stocks_url, tmp_path):
    """Without the action (and no Adj Close), the split day is a 2:1 ratio nothing explains."""
    job = _job(_bokeh_csv(tmp_path, "bars only"), "2000-03-01")
    split = _run(job, "2005-02-22", "2005-03-04")
    # the split day and every day after it are kept out until someone restates AAPL
    assert _checks(split)["price_jumps"] == (False, "WARN")
    assert _jumps(split)["unrecorded_splits"] == 5
    assert _checks(split)["tickers_complete"] == (False, "ERROR") and not split.success
    assert query(stocks_url, "SELECT max(trade_date)::text FROM raw_prices") == [("2005-02-25",)]


def test_one_day_run_is_checked_against_the_stored_day_before(stocks_url, tmp_path):
    job = _job(_bokeh_csv(tmp_path), "2000-03-01")
    assert _run(job, "2000-09-28").success
    crash = _run(job, "2000-09-29")
    assert _checks(crash)["price_jumps"] == (True, "WARN") and _jumps(crash)["moves"] == 1


def _audit(source, start: str):
    settings = load_settings().with_market(start_date=start)
    job = build_definitions(settings, source=source).resolve_job_def("audit_prices")
    return job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)


def _gaps(result) -> dict:
    evaluation = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "calendar_complete"
    )
    return evaluation.metadata


def test_the_daily_check_reads_the_run_and_the_audit_reads_the_history(stocks_url):
    """A daily run checks the sessions it wrote, not twenty years every day; an unexplained
    gap in older history is the audit job's to find (it blocks nothing already served)."""
    job = _job(SYN, "2023-12-01")
    assert _run(job, "2024-01-02", "2024-01-12").success
    with psycopg2.connect(stocks_url) as c, c.cursor() as cur:
        cur.execute("DELETE FROM raw_prices WHERE trade_date = '2024-01-05' AND ticker = 'SYN002'")
    daily = _run(job, "2024-01-16")
    assert daily.success and _checks(daily)["calendar_complete"] == (True, "ERROR")
    assert _gaps(daily)["span"].value == "2024-01-16 … 2024-01-16"
    audit = _audit(SYN, "2023-12-01")
    assert not audit.success and _checks(audit)["calendar_complete"] == (False, "ERROR")
    assert _gaps(audit)["span"].value == "2024-01-02 … 2024-01-16"
    assert _gaps(audit)["missing_by_ticker"].value == {"SYN002": 1}
    # what the audit names, a backfill of that range heals
    assert _run(job, "2024-01-02", "2024-01-12").success
    healed = _audit(SYN, "2023-12-01")
    assert healed.success and _checks(healed)["calendar_complete"] == (True, "ERROR")


def test_date_outside_the_source_is_refused_before_writing(stocks_url):
    """SYN ends before 2024-04-01: its partitions end with it, so the run is refused whole."""
    from dagster._core.errors import DagsterUnknownPartitionError

    with pytest.raises(DagsterUnknownPartitionError, match="2024-04-01"):
        _run(_job(SYN, "2023-12-01"), "2024-04-01")
    assert query(stocks_url, "SELECT to_regclass('raw_prices') IS NULL") == [(True,)]
