"""Metadata charts stay small whatever the universe: a chart of 500 lines took 4.8 s a run."""

from __future__ import annotations

import datetime as dt

from stock_assets.market.sources import SyntheticSource
from stock_assets.ml.charts import CHART_TICKERS, price_chart_markdown


def test_price_chart_draws_a_few_tickers_and_says_so():
    source = SyntheticSource(
        seed=1, n_tickers=40, start=dt.date(2019, 1, 2), end=dt.date(2019, 1, 8)
    )
    frame = source.fetch(source.default_tickers, source.start, source.end)
    markdown = price_chart_markdown(frame, "raw_prices 2019-01-02 … 2019-01-08")
    assert markdown.startswith(f"![raw_prices 2019-01-02 … 2019-01-08 (first {CHART_TICKERS} of 40")
    few = price_chart_markdown(frame[frame["ticker"] < "SYN003"], "raw_prices")
    assert few.startswith("![raw_prices](data:image/png;base64,")


PREDICTION_CHART = """
import base64, datetime as dt, sys
import numpy as np, pandas as pd
from xml.etree import ElementTree
from stock_assets.ml.charts import prediction_chart_markdown
days = [dt.date(2019, 1, 1) + dt.timedelta(days=i) for i in range(80)]
rows = pd.DataFrame([
    {"trade_date": d, "ticker": t, "actual_close": 100 + i + k, "predicted_close": 100.5 + i + k,
     "lower": 99.0 + i + k, "upper": 102.0 + i + k}
    for k, t in enumerate(["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG"])
    for i, d in enumerate(days)
])
rows.loc[3, "actual_close"] = np.nan  # a session not scored yet
markdown = prediction_chart_markdown(rows, "predicted vs actual to 2019-03-21")
head, data = markdown.split("](data:image/svg+xml;base64,")
svg = ElementTree.fromstring(base64.b64decode(data.rstrip(")")))
ns = "{http://www.w3.org/2000/svg}"
lines = svg.findall(f".//{ns}polyline")
bands = svg.findall(f".//{ns}polygon")
texts = " ".join(t.text or "" for t in svg.iter(f"{ns}text"))
points = [len(p.get("points").split()) for p in lines]
values = [float(v) for t in svg.iter(f"{ns}text") for v in [(t.text or "").replace(",", "")]
          if v.replace(".", "", 1).isdigit()]
print(head, len(lines), len(bands), max(points), "AAA actual" in texts,
      "FFF" in texts, "2019-03-21" in texts, "matplotlib" in sys.modules,
      "= 100 at its first close" in texts, max(values) < 160)  # absolute: 185
"""


def test_prediction_chart_is_svg_without_matplotlib():
    """The daily cycle's one chart: importing matplotlib for it cost the cycle 0.5 s."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", PREDICTION_CHART], capture_output=True, text=True, check=True
    ).stdout.split()
    *title, lines, bands, points, legend, sixth, end, imported, indexed, scaled = out
    assert " ".join(title) == "![predicted vs actual to 2019-03-21"
    assert (lines, bands, points) == (str(CHART_TICKERS), str(CHART_TICKERS), "60")
    assert (legend, sixth, end, imported) == ("True", "False", "True", "False")
    assert (indexed, scaled) == ("True", "True")  # five price levels on one axis: indexed


def test_price_chart_indexes_several_tickers_to_100_and_ticks_on_sessions():
    """^GSPC ≈ 2,700 and ^IXIC ≈ 7,500 on one price axis were two flat lines with noon ticks."""
    import pandas as pd

    from stock_assets.market.calendars import sessions_between
    from stock_assets.ml.charts import indexed_closes, session_ticks

    days = sessions_between(dt.date(2018, 12, 17), dt.date(2018, 12, 31))
    frame = pd.DataFrame(
        [
            {"trade_date": d, "ticker": t, "close": base * (1 + 0.01 * i)}
            for t, base in (("^GSPC", 2700.0), ("^IXIC", 7500.0))
            for i, d in enumerate(days)
        ]
    )
    wide, indexed = indexed_closes(frame)
    assert indexed and list(wide.columns) == ["^GSPC", "^IXIC"]
    assert wide.iloc[0].tolist() == [100.0, 100.0]
    up = 100.0 + len(days) - 1  # each session 1 % of the start higher
    assert wide.iloc[-1].round(6).tolist() == [up, up]
    one, alone = indexed_closes(frame[frame["ticker"] == "^GSPC"])
    assert not alone and one["^GSPC"].iloc[0] == 2700.0  # one ticker keeps its prices
    positions, labels = session_ticks(list(wide.index))
    assert labels[0] == "2018-12-17" and labels[-1] == "2018-12-31"
    assert set(labels) <= {str(d) for d in days}  # sessions only: no 2018-12-25, no times
    assert len(labels) <= 7 and positions == sorted(positions)
