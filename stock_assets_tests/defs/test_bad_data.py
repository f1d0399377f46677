"""Bad rows are kept out of raw_prices, missing tickers never stop the others, and a live
source's session is refused before it closed: real Dagster runs on the embedded Postgres."""

import datetime as dt
import math
import uuid
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.definitions import build_definitions
from stock_assets.market.calendars import available_at, sessions_between
from stock_assets.market.sources import CsvSource, SyntheticSource, YahooSource
from stock_assets.settings import load_settings
from stock_assets_tests.conftest import query
from stock_assets_tests.fake_yahoo import FakeYahoo

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
GOOD_DAYS = (
    "2024-01-02,10,11,9,10.5,10.5,100\n"
    "2024-01-03,10.5,11,10,10.8,10.8,100\n"
    "{bad}\n"
    "2024-01-05,10.8,11,10.5,10.9,10.9,100\n"
)
GOOD_0104 = "2024-01-04,10.8,11,10.5,10.9,10.9,100"


def _defs(source, start: str, tickers=None, **market):
    settings = load_settings().with_market(start_date=start, tickers=tickers, **market)
    name = f"bad_{uuid.uuid4().hex[:8]}"
    return build_definitions(settings, source=source, retraining={"model_name": name})


def _run(defs, job: str, first: str, last: str, instance, **kwargs):
    tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, tags=tags, run_config=QUIET, raise_on_error=False, **kwargs
    )


def _checks(result) -> dict[str, tuple[bool, str]]:
    return {
        e.check_name: (e.passed, e.severity.value) for e in result.get_asset_check_evaluations()
    }


def _csv_folder(folder: Path, bad_row: str) -> CsvSource:
    """Ten good tickers and BAD, whose 2024-01-04 row is `bad_row` (one of 11 = 9 % missing)."""
    for i in range(10):
        (folder / f"GOOD{i}.csv").write_text(HEADER + GOOD_DAYS.format(bad=GOOD_0104))
    (folder / "BAD.csv").write_text(HEADER + GOOD_DAYS.format(bad=bad_row))
    return CsvSource(folder)


CSV_CASES = {
    "high < low": ("2024-01-04,10.8,9,11,10.9,10.9,100", "high < max(open, close)"),
    "blank cell": ("2024-01-04,10.8,,10.5,10.9,10.9,100", "missing value"),
    "inf": ("2024-01-04,10.8,inf,10.5,10.9,10.9,100", "infinite value"),
    "high < close": ("2024-01-04,10,10.2,10,10.9,10.9,100", "high < max(open, close)"),
    "50x unit error": (
        "2024-01-04,1080,1100,1000,1090,1090,100",
        "unit error: total return beyond 50x",
    ),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_a_bad_csv_row_is_rejected_and_the_rest_stored_and_predicted(stocks_url, tmp_path, case):
    bad_row, rule = CSV_CASES[case]
    defs = _defs(_csv_folder(tmp_path, bad_row), "2024-01-02")
    instance = DagsterInstance.ephemeral()
    result = _run(defs, "ingest_prices", "2024-01-02", "2024-01-05", instance)
    assert result.success
    assert query(
        stocks_url, "SELECT ticker, trade_date::text, rule, run_id FROM raw_prices_rejected"
    ) == [("BAD", "2024-01-04", rule, result.run_id)]
    assert query(stocks_url, "SELECT count(*) FROM raw_prices") == [(11 * 4 - 1,)]
    assert query(
        stocks_url, "SELECT trade_date::text FROM raw_prices WHERE ticker = 'BAD' ORDER BY 1"
    ) == [("2024-01-02",), ("2024-01-03",), ("2024-01-05",)]
    (reason,) = query(stocks_url, "SELECT reason FROM raw_prices_missing")
    assert reason == (f"rejected: {rule}",)
    checks = _checks(result)
    reported = "price_jumps" if "unit error" in rule else "ohlc_consistent"
    assert checks[reported] == (False, "WARN")
    assert checks["tickers_complete"] == (False, "WARN")  # 1 of 11: below the 10 % share
    assert checks["calendar_complete"] == (True, "ERROR")  # the gap has a recorded reason
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == reported)
    shown = evaluation.metadata["examples" if reported == "ohlc_consistent" else "rejected"]
    assert "BAD" in shown.value and rule in shown.value

    # the next day's predictions run for every ticker; the bad day's lack BAD, marked
    ops = _run(defs, "daily_operations", "2024-01-04", "2024-01-05", instance)
    assert ops.success
    assert query(
        stocks_url,
        "SELECT as_of_date::text, count(*) FROM daily_predictions GROUP BY 1 ORDER BY 1",
    ) == [("2024-01-04", 10), ("2024-01-05", 11)]
    records = instance.fetch_materializations(AssetKey("daily_predictions"), limit=10).records
    notes = {r.partition_key: r.asset_materialization.metadata for r in records}
    assert list(notes["2024-01-04"]["missing_tickers"].value) == ["BAD"]
    assert "missing_tickers" not in notes["2024-01-05"]


def test_a_corrected_file_clears_its_rejection_on_rerun(stocks_url, tmp_path):
    defs = _defs(_csv_folder(tmp_path, CSV_CASES["high < low"][0]), "2024-01-02")
    instance = DagsterInstance.ephemeral()
    assert _run(defs, "ingest_prices", "2024-01-04", "2024-01-04", instance).success
    assert query(stocks_url, "SELECT count(*) FROM raw_prices_rejected") == [(1,)]
    (tmp_path / "BAD.csv").write_text(HEADER + GOOD_DAYS.format(bad=GOOD_0104))
    defs = _defs(CsvSource(tmp_path), "2024-01-02")
    assert _run(defs, "ingest_prices", "2024-01-04", "2024-01-04", instance).success
    assert query(stocks_url, "SELECT count(*) FROM raw_prices_rejected") == [(0,)]
    assert query(stocks_url, "SELECT count(*) FROM raw_prices_missing") == [(0,)]
    assert query(stocks_url, "SELECT count(*) FROM raw_prices WHERE ticker = 'BAD'") == [(1,)]


def test_a_rejected_refetch_never_touches_the_stored_row(stocks_url, tmp_path):
    """A good 2024-01-04 is stored; the vendor then serves it broken: the stored row stays."""
    defs = _defs(_csv_folder(tmp_path, GOOD_0104), "2024-01-02")
    instance = DagsterInstance.ephemeral()
    assert _run(defs, "ingest_prices", "2024-01-02", "2024-01-05", instance).success
    row = "SELECT * FROM raw_prices WHERE ticker = 'BAD' AND trade_date = '2024-01-04'"
    before = query(stocks_url, row)
    (tmp_path / "BAD.csv").write_text(HEADER + GOOD_DAYS.format(bad=CSV_CASES["inf"][0]))
    defs = _defs(CsvSource(tmp_path), "2024-01-02")
    result = _run(defs, "ingest_prices", "2024-01-02", "2024-01-05", instance)
    assert result.success and _checks(result)["ohlc_consistent"] == (False, "WARN")
    assert query(stocks_url, row) == before  # as first stored, ingested_at included
    assert query(stocks_url, "SELECT count(*) FROM raw_prices") == [(11 * 4,)]
    assert query(stocks_url, "SELECT ticker, rule FROM raw_prices_rejected") == [
        ("BAD", "infinite value")
    ]
    assert query(stocks_url, "SELECT count(*) FROM raw_prices_missing") == [(0,)]
    assert _checks(result)["tickers_complete"] == (True, "WARN")


SYN = SyntheticSource(seed=7, n_tickers=49, start=dt.date(2023, 11, 1), end=dt.date(2024, 1, 31))
DAY = dt.date(2024, 1, 10)


def _yahoo(monkeypatch, tmp_path, **fake) -> tuple[FakeYahoo, YahooSource]:
    truth = SYN.fetch(list(SYN.default_tickers), SYN.start, SYN.end)
    yahoo = FakeYahoo(truth, today=SYN.end, **fake).install(monkeypatch)
    return yahoo, YahooSource(retries=1, backoff=0.0, cache_dir=tmp_path, sleep=lambda s: None)


YAHOO_CASES = {
    "partial NaN": ({"high": None}, "missing value"),
    "inf": ({"low": math.inf}, "infinite value"),
    "high < close": ({"high": 1.0}, "high < max(open, close)"),
    "50x unit error": (
        {"open": 1e6, "high": 1e6, "low": 1e6, "close": 1e6},
        "unit error: total return beyond 50x",
    ),
}


@pytest.mark.parametrize("case", list(YAHOO_CASES))
def test_a_bad_yahoo_bar_is_rejected_and_the_rest_stored(stocks_url, monkeypatch, tmp_path, case):
    cells, rule = YAHOO_CASES[case]
    fake, source = _yahoo(monkeypatch, tmp_path)
    fake.broken[("SYN003", DAY)] = cells
    tickers = list(SYN.default_tickers)
    defs = _defs(source, "2023-12-01", tickers=tuple(tickers))
    result = _run(defs, "ingest_prices", "2024-01-09", "2024-01-11", DagsterInstance.ephemeral())
    assert result.success
    assert query(stocks_url, "SELECT ticker, trade_date, rule FROM raw_prices_rejected") == [
        ("SYN003", DAY, rule)
    ]
    assert query(stocks_url, "SELECT count(*) FROM raw_prices") == [(49 * 3 - 1,)]
    assert query(stocks_url, "SELECT count(*) FROM raw_prices WHERE ticker = 'SYN003'") == [(2,)]


def test_missing_tickers_are_recorded_and_the_rest_written_and_predicted(
    stocks_url, monkeypatch, tmp_path
):
    """50 tickers: one delisted (Yahoo has no such symbol), one rate-limited past its retries."""
    fake, source = _yahoo(monkeypatch, tmp_path, throttled={"SYN005"})
    tickers = (*SYN.default_tickers, "GONE")
    defs = _defs(source, "2023-12-01", tickers=tickers)
    instance = DagsterInstance.ephemeral()
    assert _run(defs, "ingest_prices", "2024-01-02", "2024-01-09", instance).success
    result = _run(defs, "daily_operations", "2024-01-10", "2024-01-10", instance)
    assert result.success
    assert _checks(result)["tickers_complete"] == (False, "WARN")
    assert query(stocks_url, f"SELECT count(*) FROM raw_prices WHERE trade_date = '{DAY}'") == [
        (48,)
    ]
    missing = dict(
        query(
            stocks_url, f"SELECT ticker, reason FROM raw_prices_missing WHERE trade_date = '{DAY}'"
        )
    )
    assert sorted(missing) == ["GONE", "SYN005"]
    assert "delisted" in missing["GONE"] and "YFRateLimitError" in missing["SYN005"]
    assert query(
        stocks_url,
        f"SELECT count(*), min(served_by) FROM daily_predictions WHERE as_of_date = '{DAY}'",
    ) == [(48, "model")]
    records = instance.fetch_materializations(AssetKey("raw_prices"), limit=1).records
    assert sorted(records[0].asset_materialization.metadata["missing_tickers"].value) == [
        "GONE",
        "SYN005",
    ]

    # ten missing (20 % > 10 %): a systemic outage blocks everything downstream
    fake.throttled |= {f"SYN{i:03d}" for i in range(10, 18)}
    blocked = _run(defs, "daily_operations", "2024-01-11", "2024-01-11", instance)
    assert not blocked.success
    assert _checks(blocked)["tickers_complete"] == (False, "ERROR")
    assert query(
        stocks_url, "SELECT count(*) FROM daily_predictions WHERE as_of_date = '2024-01-11'"
    ) == [(0,)]
    assert query(
        stocks_url, "SELECT count(*) FROM raw_prices_missing WHERE trade_date = '2024-01-11'"
    ) == [(10,)]


def test_a_live_session_is_refused_before_it_closed_and_settled(stocks_url, monkeypatch, tmp_path):
    _, source = _yahoo(monkeypatch, tmp_path)
    probe = _defs(source, "2023-12-01")
    newest = probe.resolve_job_def("ingest_prices").partitions_def.get_last_partition_key()
    last = sessions_between(
        dt.date.fromisoformat(newest) - dt.timedelta(days=7), dt.date.fromisoformat(newest)
    )[-1]
    since_close = dt.datetime.now(dt.UTC) - available_at(last, "XNYS", dt.timedelta(0))
    settle = max(0, int(since_close.total_seconds() // 60)) + 24 * 60  # not settled yet
    defs = _defs(source, "2023-12-01", settle_minutes=settle)
    result = _run(defs, "ingest_prices", newest, newest, DagsterInstance.ephemeral())
    assert not result.success
    error = result.failure_data_for_node("raw_prices").error.to_string()
    assert f"the XNYS session of {last} has not closed and settled yet" in error
    assert "its prices are final from" in error
    assert query(stocks_url, "SELECT to_regclass('raw_prices') IS NULL") == [(True,)]
