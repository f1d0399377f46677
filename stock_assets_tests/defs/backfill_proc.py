"""A single-run raw_prices backfill in its own process, for the crashed-server test:
`python -m stock_assets_tests.defs.backfill_proc FIRST LAST SEED TICKERS` with STOCK_ASSETS_HOME
set. Exits 0 when the run succeeded."""

from __future__ import annotations

import datetime as dt
import sys

from dagster import DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.definitions import build_definitions
from stock_assets.market.sources import Dividend, SyntheticSource
from stock_assets.settings import load_settings

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


EX_DATE = dt.date(2018, 3, 15)


def source(seed: int, tickers: int, first: str, last: str) -> SyntheticSource:
    """Prices from `seed`, and one dividend whose amount tells the seeds apart."""
    start = dt.date.fromisoformat(first) - dt.timedelta(days=10)
    end = dt.date.fromisoformat(last) + dt.timedelta(days=10)
    dividend = Dividend("SYN000", EX_DATE, 0.01 * seed)
    return SyntheticSource(
        seed=seed, n_tickers=tickers, start=start, end=end, dividends=(dividend,)
    )


def main() -> int:
    first, last, seed, tickers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    settings = load_settings().with_market(start_date=first)
    defs = build_definitions(settings, source=source(seed, tickers, first, last))
    result = defs.resolve_job_def("ingest_prices").execute_in_process(
        instance=DagsterInstance.ephemeral(),
        run_config=QUIET,
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        raise_on_error=False,
    )
    print("success" if result.success else "failure", flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
