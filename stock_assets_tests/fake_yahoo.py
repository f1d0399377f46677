"""A stand-in for Yahoo's chart API at the HTTP edge, so the real yfinance parsing runs.

`FakeYahoo.install(monkeypatch)` replaces yfinance's request layer (`YfData.get`/`cache_get`)
with answers built from a price frame, in the JSON layout of `/v8/finance/chart/<ticker>`.
It can drop a ticker's session (an outage), answer 429 a few times (a rate limit), or serve
NaN bars, the way Yahoo does.

Like Yahoo, it answers in the basis of the day of the fetch (`today`): bars are divided by every
split after them up to that day (splits after the requested range included), `Adj Close` is
dividend-adjusted on top (1 - D/P_prev per ex-date), dividends are split-adjusted, and splits
and dividends appear as events on their ex-dates. `prices` holds the truth: as traded, with
`split_ratio` and `dividend` per day. `rescale` restates a ticker's history silently.
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
    today: dt.date | None = None  # the fetch day; None: the last day in `prices`
    rescale: dict[str, float] = field(default_factory=dict)  # ticker -> factor on every bar
    # (ticker, day) -> cells as Yahoo sends them: None (null), inf, a wrong price
    broken: dict[tuple[str, dt.date], dict[str, float | None]] = field(default_factory=dict)
    throttled: set[str] = field(default_factory=set)  # tickers rate-limited on every request

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
        rows = _as_of_fetch(self.prices[self.prices["ticker"] == ticker], self.today)
        if ticker in self.rescale:
            for col in ("open", "high", "low", "close", "adj_close"):
                rows[col] = rows[col] * self.rescale[ticker]
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
            if ticker in self.throttled:
                raise YFRateLimitError()
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
        return FakeResponse(_chart(ticker, rows, self.nan_bars, self.broken), url=url)


def _as_of_fetch(truth: pd.DataFrame, today: dt.date | None) -> pd.DataFrame:
    """A ticker's rows up to the fetch day, in Yahoo's basis of that day."""
    rows = truth.sort_values("trade_date").copy()
    rows["trade_date"] = pd.to_datetime(rows["trade_date"]).dt.date
    if today is not None:
        rows = rows[rows["trade_date"] <= today].copy()
    ratio = rows["split_ratio"].astype(float).to_numpy()
    later = pd.Series(ratio[::-1]).cumprod().to_numpy()[::-1] / ratio  # splits after each row
    for col in ("open", "high", "low", "close"):
        rows[col] = rows[col].astype(float) / later
    rows["volume"] = rows["volume"].astype(float) * later
    rows["dividend"] = rows["dividend"].astype(float) / later
    prev = rows["close"].shift(1).to_numpy()
    step = pd.Series(1 - rows["dividend"].to_numpy() / prev).fillna(1.0).to_numpy()
    after = pd.Series(step[::-1]).cumprod().to_numpy()[::-1] / step  # ex-dates after each row
    rows["adj_close"] = rows["close"] * after
    return rows


def _chart(ticker: str, rows: pd.DataFrame, nan_bars: set, broken: dict | None = None) -> dict:
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
        cells = (broken or {}).get((row.ticker, row.trade_date), {})
        for k in ("open", "high", "low", "close"):
            value = None if blank else float(getattr(row, k))
            quote[k].append(cells.get(k, value) if k in cells else value)
        volume = None if blank else int(row.volume)
        quote["volume"].append(cells.get("volume", volume) if "volume" in cells else volume)
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
    dividends = {
        str(ts): {"amount": float(r.dividend), "date": ts}
        for ts, r in zip(stamps, rows.itertuples(index=False), strict=True)
        if r.dividend != 0.0
    }
    result.update(timestamp=stamps, indicators={"quote": [quote], "adjclose": [{"adjclose": adj}]})
    events = {k: v for k, v in (("splits", splits), ("dividends", dividends)) if v}
    if events:
        result["events"] = events
    return {"chart": {"result": [result], "error": None}}
