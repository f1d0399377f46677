"""sample, synthetic and csv sources: data, defaults and the errors they give."""

from __future__ import annotations

import datetime as dt

import pytest

from stock_assets.market.adjust import actions_of, adjust
from stock_assets.market.calendars import sessions_between
from stock_assets.market.sources import (
    CsvSource,
    Regime,
    SampleSource,
    SourceError,
    Split,
    SyntheticSource,
)


def test_sample_is_the_real_sp500_and_nasdaq():
    source = SampleSource()
    frame = source.fetch(["^GSPC", "^IXIC"], dt.date(2018, 1, 1), dt.date(2018, 12, 31))
    assert frame.groupby("ticker").size().to_dict() == {"^GSPC": 251, "^IXIC": 251}
    first = frame[(frame.ticker == "^GSPC")].iloc[0]
    assert first.trade_date == dt.date(2018, 1, 2) and round(first.close, 2) == 2695.81


@pytest.mark.parametrize(
    ("tickers", "start", "end", "message"),
    [
        (["AAPL"], dt.date(2018, 1, 2), dt.date(2018, 1, 3), "unknown ticker.*AAPL"),
        (["^GSPC"], dt.date(2019, 1, 2), dt.date(2019, 1, 3), "outside the data it has"),
        ([], dt.date(2018, 1, 2), dt.date(2018, 1, 3), "ticker list is empty"),
    ],
)
def test_sample_refuses_what_it_does_not_have(tickers, start, end, message):
    with pytest.raises(SourceError, match=message):
        SampleSource().check(tickers, start, end)


def test_synthetic_is_deterministic_and_range_independent():
    source = SyntheticSource(
        seed=11, n_tickers=3, start=dt.date(2020, 1, 2), end=dt.date(2020, 12, 31)
    )
    full = source.fetch(source.default_tickers, source.start, source.end)
    assert len(full) == 3 * len(sessions_between(source.start, source.end))
    again = SyntheticSource(
        seed=11, n_tickers=3, start=dt.date(2020, 1, 2), end=dt.date(2020, 12, 31)
    )
    part = again.fetch(["SYN001"], dt.date(2020, 6, 1), dt.date(2020, 6, 30))
    same = full[
        (full.ticker == "SYN001")
        & (full.trade_date >= dt.date(2020, 6, 1))
        & (full.trade_date <= dt.date(2020, 6, 30))
    ]
    assert part["close"].tolist() == same["close"].tolist()
    other = SyntheticSource(
        seed=12, n_tickers=3, start=dt.date(2020, 1, 2), end=dt.date(2020, 12, 31)
    )
    assert (
        other.fetch(["SYN001"], dt.date(2020, 6, 1), dt.date(2020, 6, 30))["close"].tolist()
        != part["close"].tolist()
    )


def test_synthetic_regimes_and_splits():
    calm_then_wild = SyntheticSource(
        seed=1,
        n_tickers=1,
        start=dt.date(2020, 1, 2),
        end=dt.date(2021, 12, 31),
        regimes=(Regime(dt.date(2020, 1, 1), 0.0, 0.004), Regime(dt.date(2021, 1, 1), 0.0, 0.03)),
        splits=(Split("SYN000", dt.date(2020, 6, 15), 4.0),),
    )
    f = calm_then_wild.fetch(["SYN000"], calm_then_wild.start, calm_then_wild.end)
    f = f.assign(adj_close=adjust(f, actions_of(f))["close"].to_numpy())
    ret = (f["adj_close"] / f["adj_close"].shift(1)).apply(lambda r: abs(r - 1))
    y2020, y2021 = ret[f.trade_date < dt.date(2021, 1, 1)], ret[f.trade_date >= dt.date(2021, 1, 4)]
    assert y2021.mean() > 4 * y2020.mean()
    day = f.set_index("trade_date")
    before, on = day.loc[dt.date(2020, 6, 12)], day.loc[dt.date(2020, 6, 15)]
    assert on.split_ratio == 4.0 and 0.2 < on.close / before.close < 0.3
    assert 0.9 < on.adj_close / before.adj_close < 1.1


def _write(path, text):
    path.write_text(text)
    return path


def test_csv_reads_common_layouts(tmp_path):
    _write(
        tmp_path / "AAA.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,10,11,9,10.5,10.4,100\n"
        "2024-01-03,10.5,12,10,11,10.9,200\n",
    )
    _write(
        tmp_path / "BBB.csv",
        "date,open,high,low,close,volume\n2024-01-02,20,21,19,20.5,300\n2024-01-03,20,22,19,21,400\n",
    )
    source = CsvSource(tmp_path)
    assert source.default_tickers == ("AAA", "BBB") and source.default_start == "2024-01-02"
    frame = source.fetch(["AAA", "BBB"], dt.date(2024, 1, 2), dt.date(2024, 1, 3))
    aaa, bbb = frame[frame.ticker == "AAA"], frame[frame.ticker == "BBB"]
    # no action columns: taken as adjusted by the file (Adj Close scales the bars)
    assert aaa.close.tolist() == [10.4, 10.9] and aaa.open.iloc[0] == pytest.approx(
        10 * 10.4 / 10.5
    )
    assert bbb.close.tolist() == [20.5, 21.0] and frame.volume.tolist() == [100, 200, 300, 400]
    assert source.basis("AAA") == "adjusted by the source"
    with pytest.raises(SourceError, match=r"no file for ticker.*CCC"):
        source.check(["CCC"], dt.date(2024, 1, 2), dt.date(2024, 1, 3))
    with pytest.raises(SourceError, match=r"outside what AAA.csv has"):
        source.check(["AAA"], dt.date(2024, 1, 2), dt.date(2024, 1, 4))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Date,Open,High,Low,Close,Volume\n2024-01-02,1,1,1,1,1\n02/01/2024,1,1,1,1,1\n",
            r"BAD.csv: line 3: '02/01/2024' is not an ISO date",
        ),
        (
            "Date,Open,High,Low,Close,Volume\n2024-01-02,1,1,1,1,1\n2024-01-03,1,x,1,1,1\n",
            r"BAD.csv: line 3: 'x' high is not a number",
        ),
        (
            "Date,Open,High,Close,Volume\n2024-01-02,1,1,1,1\n",
            r"BAD.csv: line 1: missing column\(s\) low",
        ),
        (
            "Date,Open,High,Low,Close,Volume\n2024-01-02,1,1,1,1,1\n2024-01-02,1,1,1,1,1\n",
            r"BAD.csv: line 3: '2024-01-02' repeats a date",
        ),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path, text, message):
    _write(tmp_path / "BAD.csv", text)
    with pytest.raises(SourceError, match=message):
        CsvSource(tmp_path).fetch(["BAD"], dt.date(2024, 1, 2), dt.date(2024, 1, 3))
