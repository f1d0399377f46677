"""An ingest_prices run against a Yahoo that answers 429 to everything, in its own process, for
the interrupt test: `python -m stock_assets_tests.defs.outage_proc CACHE_DIR RETRIES SECONDS` with
STOCK_ASSETS_HOME set. It logs the back-off wait to stderr
and exits 0 only if the run succeeded (it cannot)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance

from stock_assets_tests.defs.test_bad_data import _defs, _run, _yahoo

if __name__ == "__main__":
    # after the imports: the test package's conftest turns retries off when imported
    os.environ["STOCK_ASSETS_INGEST_RETRIES"] = sys.argv[2]
    os.environ["STOCK_ASSETS_INGEST_RETRY_SECONDS"] = sys.argv[3]
    with pytest.MonkeyPatch.context() as patch:
        _, source = _yahoo(patch, Path(sys.argv[1]), rate_limited=10**6)
        defs = _defs(source, "2023-12-01", tickers=("SYN000", "SYN001"))
        with DagsterInstance.ephemeral() as instance:
            result = _run(defs, "ingest_prices", "2024-01-09", "2024-01-10", instance)
    sys.exit(0 if result.success else 1)
