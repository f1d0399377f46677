"""Features are causal, complete after warm-up, and the target is the next session's return."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from stock_assets.market.adjust import actions_of, adjust
from stock_assets.market.sources import SampleSource, Split, SyntheticSource
from stock_assets.ml.features import (
    FEATURES,
    SERVING_HISTORY,
    WARMUP,
    compute_features,
    next_log_return,
)

SYN = SyntheticSource(
    seed=2,
    n_tickers=3,
    start=dt.date(2018, 1, 2),
    end=dt.date(2020, 6, 30),
    splits=(Split("SYN001", dt.date(2019, 3, 4), 3.0),),
)
RAW = SYN.fetch(SYN.default_tickers, SYN.start, SYN.end)  # as traded, with the split
PRICES = adjust(RAW, actions_of(RAW))  # what features read: adjusted point in time


@pytest.mark.parametrize("n", [WARMUP + 1, WARMUP + 37, 400, 555])
def test_prefix_features_equal_full_history_features(n):
    full = compute_features(PRICES)
    cut = sorted(PRICES["trade_date"].unique())[n - 1]
    prefix = compute_features(PRICES[PRICES["trade_date"] <= cut])
    head = full[full["trade_date"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(prefix.reset_index(drop=True), head)


def test_future_prices_do_not_move_past_features():
    cut = dt.date(2019, 6, 28)
    changed = PRICES.copy()
    later = changed["trade_date"] > cut
    changed.loc[later, ["open", "high", "low", "close"]] *= 1000
    a = compute_features(PRICES)
    b = compute_features(changed)
    pd.testing.assert_frame_equal(a[a.trade_date <= cut], b[b.trade_date <= cut])


def test_warmup_dropped_and_no_nan():
    feats = compute_features(PRICES)
    first = feats.groupby("ticker")["trade_date"].min()
    sessions = sorted(PRICES["trade_date"].unique())
    assert set(first) == {sessions[WARMUP]}
    assert np.isfinite(feats[list(FEATURES)].to_numpy()).all()


def test_split_is_invisible_in_features():
    """SYN001's 3:1 split moves the as-traded close; features on adjusted prices do not jump."""
    feats = compute_features(PRICES).set_index(["ticker", "trade_date"])
    ret = feats.loc["SYN001", "ret_1"]
    assert abs(ret.loc[dt.date(2019, 3, 4)]) < 0.1


def test_target_is_next_log_return_and_unknown_at_the_end():
    target = next_log_return(PRICES)
    one = PRICES.assign(target=target)[PRICES.ticker == "SYN000"].reset_index(drop=True)
    expected = np.log(one["close"].shift(-1) / one["close"])
    np.testing.assert_allclose(one["target"][:-1], expected[:-1])
    assert np.isnan(one["target"].iloc[-1])


def test_too_short_history_is_a_clear_error():
    short = PRICES[PRICES["trade_date"] <= sorted(PRICES["trade_date"].unique())[100]]
    with pytest.raises(
        ValueError, match=r"SYN000: 101 rows of history, features need more than 200"
    ):
        compute_features(short)


def test_real_sample_features_are_finite():
    prices = SampleSource().fetch(["^GSPC", "^IXIC"], dt.date(1999, 1, 4), dt.date(2017, 12, 29))
    feats = compute_features(prices)
    assert len(feats) == 2 * (len(prices) // 2 - WARMUP)
    assert np.isfinite(feats[list(FEATURES)].to_numpy()).all()


def test_since_keeps_the_full_frames_values():
    """Serving asks for its last rows only; the recursions still start at the first row."""
    full = compute_features(PRICES)
    since = dt.date(2019, 11, 1)
    tail = compute_features(PRICES, since=since)
    head = full[full["trade_date"] >= since].reset_index(drop=True)
    pd.testing.assert_frame_equal(tail, head, check_exact=True)


SAMPLE = SampleSource().fetch(["^GSPC", "^IXIC"], dt.date(1999, 1, 4), dt.date(2018, 12, 31))
SAMPLE_FEATURES = compute_features(SAMPLE)
SERVED_ROWS = 60  # more than any sequence length the search space allows


def _worst_tail_error(rows: int) -> float:
    """Largest |tail − full| over the last SERVED_ROWS feature rows of tails of `rows` sessions
    ending on many days of the real sample, in units of (|full| + the feature's std)."""
    scale = SAMPLE_FEATURES[list(FEATURES)].std().to_numpy()
    full = SAMPLE_FEATURES.set_index(["ticker", "trade_date"])[list(FEATURES)]
    worst = 0.0
    for _, series in SAMPLE.groupby("ticker"):
        series = series.sort_values("trade_date", ignore_index=True)
        for end in range(rows + SERVED_ROWS, len(series), 101):
            tail = series.iloc[end - rows : end]
            since = tail["trade_date"].iloc[-SERVED_ROWS]
            got = compute_features(tail, since=since).set_index(["ticker", "trade_date"])
            want = full.loc[got.index].to_numpy()
            error = np.abs(got.to_numpy() - want) / (np.abs(want) + scale)
            worst = max(worst, float(error.max()))
    return worst


def test_a_serving_tail_gives_the_full_history_features():
    """The daily cycle reads SERVING_HISTORY rows per ticker, not the whole history: every
    recursive indicator (EMA(200) slowest, PSAR path-dependent) has forgotten where it started
    by then, on twenty years of real index data, to 1e-9."""
    assert _worst_tail_error(SERVING_HISTORY) <= 1e-9


def test_a_short_tail_would_not():
    """The bound is needed: a 1,000-session tail misses by more than 1e-9 (EMA(200))."""
    assert _worst_tail_error(1000) > 1e-9
