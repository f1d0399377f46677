"""raw_prices retries what may heal (a source that did not answer) and fails at once on what
cannot (a request outside the source's data): no 10-minute wait before an error that was
certain from the start."""

import datetime as dt

from dagster import DagsterEventType, DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.definitions import build_definitions
from stock_assets.market.sources import SyntheticSource, YahooSource
from stock_assets.settings import load_settings
from stock_assets_tests.defs.test_bad_data import _defs, _run, _yahoo

PROC = "stock_assets_tests.defs.outage_proc"


def _ingest(source, first: str, last: str):
    settings = load_settings().with_market(start_date="2018-12-03")
    job = build_definitions(settings, source=source).resolve_job_def("ingest_prices")
    return job.execute_in_process(
        instance=DagsterInstance.ephemeral(),
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        raise_on_error=False,
    )


def _retries(result) -> int:
    return sum(1 for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY)


def test_a_request_the_source_cannot_answer_fails_at_once_with_the_reason(stocks_url, monkeypatch):
    """An unknown ticker (outside the source's data) cannot heal: no retry, the reason shown."""
    monkeypatch.setenv("STOCK_ASSETS_INGEST_RETRIES", "2")
    monkeypatch.setenv("STOCK_ASSETS_INGEST_RETRY_SECONDS", "1")
    source = SyntheticSource(seed=7, n_tickers=2, start=dt.date(2023, 11, 1))
    defs = _defs(source, "2023-12-01", tickers=("SYN000", "NOPE"))
    result = _run(defs, "ingest_prices", "2024-01-09", "2024-01-10", DagsterInstance.ephemeral())
    assert not result.success
    assert _retries(result) == 0
    (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert "synthetic: unknown ticker(s) NOPE" in failure.event_specific_data.error.to_string()


def test_partitions_end_where_a_historical_source_ends():
    """sample ends on 2018-12-31: no partition after it shows as missing for ever; a live
    source's run to today."""
    sample = build_definitions(load_settings()).resolve_job_def("ingest_prices")
    assert sample.partitions_def.get_partition_keys()[-1] == "2018-12-31"
    synthetic = build_definitions(
        load_settings(), source=SyntheticSource(end=dt.date(2024, 1, 31))
    ).resolve_job_def("ingest_prices")
    assert synthetic.partitions_def.get_partition_keys()[-1] == "2024-01-31"
    live = build_definitions(load_settings(), source=YahooSource()).resolve_job_def("ingest_prices")
    assert live.partitions_def.get_partition_keys()[-1] >= str(dt.date.today() - dt.timedelta(4))


def test_a_source_that_does_not_answer_is_retried_with_back_off(stocks_url, monkeypatch, tmp_path):
    """Yahoo answers 429 to everything: every ticker is missing, the run asks for its retries,
    then fails naming the outage."""
    monkeypatch.setenv("STOCK_ASSETS_INGEST_RETRIES", "2")
    monkeypatch.setenv("STOCK_ASSETS_INGEST_RETRY_SECONDS", "0")
    _, source = _yahoo(monkeypatch, tmp_path, rate_limited=10**6)
    defs = _defs(source, "2023-12-01", tickers=("SYN000", "SYN001"))
    result = _run(defs, "ingest_prices", "2024-01-09", "2024-01-10", DagsterInstance.ephemeral())
    assert not result.success
    assert _retries(result) == 2


def test_a_back_off_wait_says_what_it_waits_for_and_ctrl_c_stops_it(stocks_url, tmp_path):
    """Dagster's own retry wait ignores SIGINT/SIGTERM until it ends (interrupts are captured):
    a 600 s back-off must instead be announced and end at Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys
    import time

    log = tmp_path / "run.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", PROC, str(tmp_path), "2", "600"],
            env=os.environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while "waiting 600 s" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        said = log.read_text()
        assert "waiting 600 s for the source before retry 1 of 2" in said, said[-3000:]
        assert "100% of tickers missing on 2024-01-09 (e.g. yfinance: SYN000" in said
        assert "YFRateLimitError" in said, said[-3000:]
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 1
        assert time.monotonic() - interrupted < 30
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
