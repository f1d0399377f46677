"""A stand-in for Yahoo's chart API at the HTTP edge, so the real yfinance parsing runs.

`FakeYahoo.install(monkeypatch)` replaces yfinance's request layer (`YfData.get`/`cache_get`)
with answers built from a price frame, in the JSON layout of `/v8/finance/chart/<ticker>`.
It can drop a ticker's session (an outage), answer 429 a few times (a rate limit), or serve
NaN bars, the way Yahoo does.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pandas as pd

NY = ZoneInfo("America/New_York")


@dataclass
class FakeResponse:
    payload: dict
    status_code: int = 200
    url: str = "https://query2.finance.yahoo.com/v8/finance/chart"

    @property
    def text(self) -> str:
        return json.dumps(self.payload)

    def json(self) -> dict:
        return self.payload

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            from curl_cffi.requests.exceptions import HTTPError

            raise HTTPError(f"HTTP Error {self.status_code}")


@dataclass
class FakeYahoo:
    prices: pd.DataFrame  # PRICE_COLUMNS rows
    rate_limited: int = 0  # answer this many chart requests with a rate-limit error first
    drop: set[tuple[str, dt.date]] = field(default_factory=set)  # (ticker, day) bars withheld
    nan_bars: set[tuple[str, dt.date]] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)

    def install(self, monkeypatch) -> FakeYahoo:
        from yfinance.data import YfData

        def get(_self, url, params=None, timeout=30):
            return self.answer(url, params or {})

        monkeypatch.setattr(YfData, "get", get)
        monkeypatch.setattr(YfData, "cache_get", get)
        return self

    def answer(self, url: str, params: dict) -> FakeResponse:
        from yfinance.exceptions import YFRateLimitError

        self.requests.append(url)
        if "/v8/finance/chart/" not in url:
            return FakeResponse({"error": "not found"}, status_code=404, url=url)
        ticker = url.rsplit("/", 1)[1]
        rows = self.prices[self.prices["ticker"] == ticker]
        if rows.empty:
            return FakeResponse(
                {
                    "chart": {
                        "result": None,
                        "error": {
                            "code": "Not Found",
                            "description": "No data found, symbol may be delisted",
                        },
                    }
                },
                status_code=404,
                url=url,
            )
        if "period1" in params:
            if self.rate_limited > 0:
                self.rate_limited -= 1
                raise YFRateLimitError()
            start = dt.datetime.fromtimestamp(params["period1"], dt.UTC).astimezone(NY).date()
            end = dt.datetime.fromtimestamp(params["period2"], dt.UTC).astimezone(NY).date()
            days = pd.to_datetime(rows["trade_date"]).dt.date
            rows = rows[(days >= start) & (days < end)]
        else:
            rows = rows.tail(1)
        rows = rows[[(ticker, d) not in self.drop for d in rows["trade_date"]]]
        return FakeResponse(_chart(ticker, rows, self.nan_bars), url=url)


def _chart(ticker: str, rows: pd.DataFrame, nan_bars: set) -> dict:
    meta = {
        "currency": "USD",
        "symbol": ticker,
        "exchangeName": "NMS",
        "instrumentType": "EQUITY",
        "gmtoffset": -18000,
        "timezone": "EST",
        "exchangeTimezoneName": "America/New_York",
        "dataGranularity": "1d",
        "range": "",
        "priceHint": 2,
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }
    result: dict = {"meta": meta}
    if rows.empty:
        result["indicators"] = {"quote": [{}], "adjclose": [{}]}
        return {"chart": {"result": [result], "error": None}}
    stamps = [
        int(dt.datetime.combine(d, dt.time(9, 30), NY).timestamp()) for d in rows["trade_date"]
    ]
    quote = {k: [] for k in ("open", "high", "low", "close", "volume")}
    adj = []
    for row in rows.itertuples(index=False):
        blank = (row.ticker, row.trade_date) in nan_bars
        for k in ("open", "high", "low", "close"):
            quote[k].append(None if blank else float(getattr(row, k)))
        quote["volume"].append(None if blank else int(row.volume))
        adj.append(None if blank else float(row.adj_close))
    splits = {
        str(ts): {
            "date": ts,
            "numerator": float(r.split_ratio),
            "denominator": 1.0,
            "splitRatio": f"{r.split_ratio:g}:1",
        }
        for ts, r in zip(stamps, rows.itertuples(index=False), strict=True)
        if r.split_ratio != 1.0
    }
    result.update(timestamp=stamps, indicators={"quote": [quote], "adjclose": [{"adjclose": adj}]})
    if splits:
        result["events"] = {"splits": splits}
    return {"chart": {"result": [result], "error": None}}
