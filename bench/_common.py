"""Shared set-up for the benchmarks: a state folder of their own, never the user's."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def bench_home(name: str) -> Path:
    """STOCK_ASSETS_HOME for a benchmark: $BENCH_HOME if set, else a fresh temporary folder."""
    home = Path(os.environ.get("BENCH_HOME") or tempfile.mkdtemp(prefix=f"stock-assets-{name}-"))
    os.environ["STOCK_ASSETS_HOME"] = str(home)
    os.environ.pop("STOCK_ASSETS_POSTGRES_URL", None)
    return home
