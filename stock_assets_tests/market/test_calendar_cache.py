"""The session table is built from exchange_calendars once a day per machine and read from a
cache after: building it took 0.3 s (and importing the library 0.4 s) in every run process."""

import datetime as dt
import json
import os
import subprocess
import sys

import exchange_calendars as xcals
import pandas as pd

PROBE = """
import datetime as dt, json, sys
from stock_assets.market import calendars as c
days = c.sessions_between(dt.date(1999, 1, 1), dt.date(2026, 12, 31))
close = c.available_at(dt.date(2019, 11, 29), "XNYS", dt.timedelta(0))
print(json.dumps({"built": "exchange_calendars" in sys.modules, "n": len(days),
                  "first": str(days[0]), "last": str(days[-1]), "close": close.isoformat()}))
"""


def _probe(cache) -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_second_process_reads_the_cached_sessions(tmp_path):
    first, second = _probe(tmp_path), _probe(tmp_path)
    assert first["built"] and not second["built"]  # the library is not even imported
    assert {k: v for k, v in first.items() if k != "built"} == {
        k: v for k, v in second.items() if k != "built"
    }
    cal = xcals.get_calendar("XNYS", start="1990-01-01")
    expected = cal.sessions_in_range(pd.Timestamp("1999-01-01"), pd.Timestamp("2026-12-31"))
    assert second["n"] == len(expected) and second["first"] == "1999-01-04"
    # the day after Thanksgiving closes at 13:00 New York time: early closes survive the cache
    early = dt.datetime(2019, 11, 29, 18, tzinfo=dt.UTC)
    assert dt.datetime.fromisoformat(second["close"]) == early


def test_an_unwritable_or_corrupt_cache_still_gives_the_sessions(tmp_path):
    (tmp_path / "stock_assets").write_text("not a folder")  # cannot write under it
    assert _probe(tmp_path)["n"] > 6000
    corrupt = tmp_path / "other"
    assert _probe(corrupt)["n"] > 6000
    for path in (corrupt / "stock_assets").rglob("*.npz"):
        path.write_bytes(b"garbage")
    assert _probe(corrupt)["built"]  # rebuilt, not failed
