"""Serve every ticker that has data, and nothing else: which (day, ticker) a model may predict,
and the naive fallback when a cross-ticker model cannot run without a missing ticker. Pure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stock_assets.ml.bundle import NAIVE, OUTPUT_COLUMNS, Bundle, predict_from_prices

CROSS_TICKER = "lstm_cross"  # the architecture whose tickers attend to each other
SERVED_BY_MODEL = "model"
SERVED_BY_NAIVE = "naive fallback"


@dataclass(frozen=True)
class Served:
    predictions: pd.DataFrame  # bundle OUTPUT_COLUMNS + served_by
    missing: pd.DataFrame  # as_of_date, ticker, reason: configured tickers not predicted
    fallback_days: list[dt.date]  # days served by the naive model for every ticker
    naive: Bundle | None = None  # the fallback's bundle, when a day needed it


def usable(
    prices: pd.DataFrame,
    sessions: Sequence[dt.date],
    as_of: Sequence[dt.date],
    need: int,
    tickers: Sequence[str],
) -> dict[dt.date, set[str]]:
    """Per as-of day, the tickers with a stored row on each of the last `need` sessions up to
    it (exchange sessions, so a session every ticker missed still counts as a gap)."""
    order = {d: i for i, d in enumerate(sessions)}
    present = np.zeros((len(sessions), len(tickers)), dtype=np.int32)
    column = {t: j for j, t in enumerate(tickers)}
    rows = prices[prices["ticker"].isin(column)]
    reach = [order[d] + 1 - need for d in as_of if d in order]
    if reach:  # only the sessions the windows cover: not every stored row
        rows = rows[rows["trade_date"] >= sessions[max(0, min(reach))]]
    days = pd.to_datetime(rows["trade_date"]).dt.date.map(order)
    ok = days.notna().to_numpy()
    present[days[ok].astype(int).to_numpy(), rows["ticker"][ok].map(column).to_numpy()] = 1
    cumulative = np.vstack([np.zeros((1, len(tickers)), np.int32), present.cumsum(axis=0)])
    out = {}
    for day in as_of:
        i = order.get(day, -1)  # -1: not a session of the span, nothing usable
        if i + 1 < need:
            out[day] = set()
            continue
        window = cumulative[i + 1] - cumulative[i + 1 - need]
        out[day] = {t for t, j in column.items() if window[j] == need}
    return out


def serve(
    bundle: Bundle,
    net,
    prices: pd.DataFrame,
    as_of: list[dt.date],
    sessions: Sequence[dt.date],
    tickers: Sequence[str],
    naive: Callable[[], Bundle],
) -> Served:
    """Predictions as of each day for every configured ticker the model can serve.

    A ticker without a row on each session the model reads is not predicted (and listed in
    `missing`). A cross-ticker model needs all its tickers: a day one of them lacks is served
    by `naive()` for every ticker, labelled `naive fallback` (built only then: calibrating it
    reads every ticker's history).
    """
    learned = bundle.kind != NAIVE
    wanted = [t for t in tickers if not learned or t in bundle.tickers]
    ok = usable(prices, sessions, as_of, bundle.history_needed(), wanted)
    has_row = usable(prices, sessions, as_of, 1, tickers)
    fallback = [
        d
        for d in as_of
        if learned
        and bundle.model_params.get("arch") == CROSS_TICKER
        and not set(bundle.tickers) <= ok[d]
    ]
    frames, fallback_bundle = [], None
    model_days = [d for d in as_of if d not in fallback and ok[d]]
    if model_days:
        able = set().union(*(ok[d] for d in model_days))  # enough history to compute features
        mine = prices[prices["ticker"].isin(able)]
        preds = predict_from_prices(bundle, net, mine, as_of=model_days, allow_gaps=True)
        keep = [t in ok[d] for d, t in zip(preds["as_of_date"], preds["ticker"], strict=True)]
        frames.append(preds[keep].assign(served_by=SERVED_BY_MODEL))
    if fallback:
        fallback_bundle = naive()
        preds = predict_from_prices(
            fallback_bundle, None, prices[prices["ticker"].isin(tickers)], fallback
        )
        keep = [t in has_row[d] for d, t in zip(preds["as_of_date"], preds["ticker"], strict=True)]
        frames.append(preds[keep].assign(served_by=SERVED_BY_NAIVE))
    predictions = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=[*OUTPUT_COLUMNS, "served_by"])
    )
    predictions = predictions.dropna(subset=["predicted_return", "last_close"])
    missing = _missing(predictions, as_of, tickers, bundle, has_row)
    return Served(predictions, missing, fallback, fallback_bundle)


def _missing(
    predictions: pd.DataFrame,
    as_of: Sequence[dt.date],
    tickers: Sequence[str],
    bundle: Bundle,
    has_row: dict[dt.date, set[str]],
) -> pd.DataFrame:
    done = set(zip(predictions["as_of_date"], predictions["ticker"], strict=True))
    rows = []
    for day in as_of:
        for ticker in tickers:
            if (day, ticker) in done:
                continue
            if ticker not in has_row[day]:
                reason = "no stored row that day"
            elif bundle.kind != NAIVE and ticker not in bundle.tickers:
                reason = "not a ticker of the production model"
            else:
                reason = f"a session missing among the {bundle.history_needed()} the model reads"
            rows.append((day, ticker, reason))
    return pd.DataFrame(rows, columns=["as_of_date", "ticker", "reason"])
