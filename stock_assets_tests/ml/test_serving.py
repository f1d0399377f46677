"""Serving with missing tickers: real torch networks, no registry."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from stock_assets.market.calendars import sessions_between
from stock_assets.market.sources import SyntheticSource
from stock_assets.ml.bundle import FEATURES, NAIVE, Bundle, build_net
from stock_assets.ml.serving import SERVED_BY_MODEL, SERVED_BY_NAIVE, serve, usable

SYN = SyntheticSource(seed=3, n_tickers=3, start=dt.date(2022, 1, 3), end=dt.date(2023, 3, 31))
TICKERS = list(SYN.default_tickers)
SESSIONS = sessions_between(SYN.start, SYN.end)
LAST3 = SESSIONS[-3:]


def _prices():
    prices = SYN.fetch(TICKERS, SYN.start, SYN.end)
    return prices.assign(adj_close=prices["close"])


def _bundle(arch: str) -> tuple[Bundle, object]:
    import torch

    torch.manual_seed(0)
    bundle = Bundle(
        kind=arch,
        tickers=TICKERS,
        half_width=0.02,
        seq_len=5,
        scalers={t: {f: [0.0, 1.0] for f in FEATURES} for t in TICKERS},
        model_params={"hidden": 8, "layers": 1, "dropout": 0.0, "arch": arch},
    )
    return bundle, build_net(bundle)


NAIVE_BUNDLE = Bundle(kind=NAIVE, tickers=TICKERS, half_width=0.02)


def _without(prices, ticker: str, day: dt.date):
    return prices[~((prices.ticker == ticker) & (prices.trade_date == day))]


def test_usable_needs_every_session_the_model_reads():
    prices = _without(_prices(), TICKERS[2], SESSIONS[-3])
    ok = usable(prices, SESSIONS, LAST3, 2, TICKERS)
    assert ok[LAST3[0]] == set(TICKERS[:2])  # no row that day
    assert ok[LAST3[1]] == set(TICKERS[:2])  # the day before it is inside the window of 2
    assert ok[LAST3[2]] == set(TICKERS)


def test_a_per_ticker_model_predicts_the_others_exactly_as_with_full_data():
    bundle, net = _bundle("lstm")
    full = serve(bundle, net, _prices(), LAST3, SESSIONS, TICKERS, lambda: NAIVE_BUNDLE)
    gap = serve(
        bundle,
        net,
        _without(_prices(), TICKERS[2], LAST3[-1]),
        LAST3,
        SESSIONS,
        TICKERS,
        lambda: NAIVE_BUNDLE,
    )
    assert len(full.predictions) == 9 and full.missing.empty and not full.fallback_days
    assert len(gap.predictions) == 8 and set(gap.predictions["served_by"]) == {SERVED_BY_MODEL}
    assert gap.missing[["as_of_date", "ticker"]].values.tolist() == [[LAST3[-1], TICKERS[2]]]
    key = ["as_of_date", "ticker"]
    merged = gap.predictions.merge(full.predictions, on=key, suffixes=("", "_full"))
    np.testing.assert_allclose(merged["predicted_return"], merged["predicted_return_full"])


def test_a_cross_ticker_model_falls_back_to_naive_for_every_ticker_on_a_gap_day():
    bundle, net = _bundle("lstm_cross")
    prices = _without(_prices(), TICKERS[2], LAST3[-1])
    served = serve(bundle, net, prices, LAST3, SESSIONS, TICKERS, lambda: NAIVE_BUNDLE)
    assert served.fallback_days == [LAST3[-1]]
    last = served.predictions[served.predictions.as_of_date == LAST3[-1]]
    assert set(last["served_by"]) == {SERVED_BY_NAIVE} and len(last) == 2
    assert (last["predicted_return"] == 0.0).all()  # naive: tomorrow = today
    earlier = served.predictions[served.predictions.as_of_date < LAST3[-1]]
    assert set(earlier["served_by"]) == {SERVED_BY_MODEL} and len(earlier) == 6


@pytest.mark.parametrize("missing_day", [0, 1])
def test_the_naive_model_never_fills_a_missing_day(missing_day):
    prices = _without(_prices(), TICKERS[0], LAST3[missing_day])
    served = serve(NAIVE_BUNDLE, None, prices, LAST3, SESSIONS, TICKERS, lambda: NAIVE_BUNDLE)
    assert len(served.predictions) == 8
    assert served.missing.values.tolist() == [
        [LAST3[missing_day], TICKERS[0], "no stored row that day"]
    ]
