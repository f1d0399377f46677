"""The small synthetic market and tiny search profile the retraining tests share: a few
seconds per retraining."""

from __future__ import annotations

import datetime as dt

from stock_assets.market.sources import SyntheticSource

SYN = SyntheticSource(seed=9, n_tickers=2, start=dt.date(2016, 1, 4), end=dt.date(2019, 12, 31))
CUTOFF = dt.date(2019, 6, 28)
TINY = dict(
    n_trials=2,
    max_epochs=3,
    patience=2,
    gap=12,
    seq_lens=[5, 10],
    hidden_sizes=[8],
    layer_counts=[1],
    batch_sizes=[64],
    min_common_window=10,
)
