"""Shared set-up for the benchmarks: a state folder of their own, never the user's."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_OWN: list[Path] = []


def bench_home(name: str) -> Path:
    """STOCK_ASSETS_HOME for a benchmark: $BENCH_HOME if set, else a fresh temporary folder."""
    given = os.environ.get("BENCH_HOME")
    home = Path(given or tempfile.mkdtemp(prefix=f"stock-assets-{name}-"))
    if not given:
        _OWN.append(home)
    os.environ["STOCK_ASSETS_HOME"] = str(home)
    os.environ.pop("STOCK_ASSETS_POSTGRES_URL", None)
    return home


def stop_own_server() -> None:
    """Stop the embedded Postgres of a state folder this benchmark made (never $BENCH_HOME's)."""
    from stock_assets.runtime.postgres import embedded_stop

    for home in _OWN:
        if (home / "pgdata").exists():
            embedded_stop(home / "pgdata")
