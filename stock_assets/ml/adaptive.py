"""The daily interval with online adaptation: each ticker's miscoverage level αₜ moves after
every scored session (ACI), and tomorrow's interval is prediction ± q(αₜ)·σ̂ₜ. Pure: pandas.

The recursion runs over the days of a run in order, from the state stored for the day before
(the `interval_state` asset), so one run over a range and one run per day write the same rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd

from stock_assets.ml.bundle import Bundle, with_interval
from stock_assets.ml.conformal import TARGET_MISCOVERAGE, aci_step, quantile

STATE_COLUMNS: tuple[str, ...] = (
    "trade_date",  # the as-of day of the interval
    "ticker",
    "alpha",  # miscoverage level the interval was drawn at
    "q",  # q(alpha): the score quantile of the serving model
    "sigma",  # σ̂ of the next session's log return
    "lower_return",
    "upper_return",
    "covered",  # whether the previous session's interval held this day's return (NaN: none)
    "served_by",
)


def realized_returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Per (trade_date, ticker) of adjusted prices: the log return since the ticker's previous
    stored row, and that row's date."""
    ordered = prices.sort_values(["ticker", "trade_date"], ignore_index=True)
    day = pd.to_datetime(ordered["trade_date"]).dt.date
    same = ordered["ticker"].eq(ordered["ticker"].shift())
    log_c = np.log(ordered["close"].astype(float))
    return pd.DataFrame(
        {
            "trade_date": day,
            "ticker": ordered["ticker"],
            "r": np.where(same, log_c - log_c.shift(), np.nan),
            "previous": day.shift().where(same),
        }
    ).set_index(["trade_date", "ticker"])


def adapt(
    preds: pd.DataFrame,
    bundles: Mapping[str, Bundle],
    realized: pd.DataFrame,
    seed: pd.DataFrame,
    previous_session: Mapping[dt.date, dt.date | None],
    gamma: float,
    learn_after: dt.date | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Intervals for `preds` (OUTPUT_COLUMNS + served_by, any days) drawn at each ticker's
    adapted level, and the state rows (STATE_COLUMNS) they leave.

    bundles: the bundle behind each `served_by` value. seed: the newest stored state row per
    ticker before the first day. A ticker's level moves on day d only when it has an interval
    as of d's previous session that is out of sample (as-of after `learn_after`) and a return
    into d; otherwise it carries over.
    """
    state: dict[str, tuple] = {
        row.ticker: (row.trade_date, float(row.alpha), row.lower_return, row.upper_return)
        for row in seed.itertuples()
    }
    out_frames, state_rows = [], []
    ordered = preds.sort_values(["as_of_date", "ticker"], ignore_index=True)
    # each row's realized return and the row it is measured from, looked up once for all days
    keys = pd.MultiIndex.from_frame(ordered[["as_of_date", "ticker"]])
    r_all = realized["r"].reindex(keys).to_numpy(float)
    prev_all = realized["previous"].reindex(keys).to_numpy()
    for day, at in sorted(ordered.groupby("as_of_date").indices.items()):
        rows = ordered.iloc[at]
        before = previous_session.get(day)
        tickers = rows["ticker"].to_list()
        alpha = np.empty(len(rows))
        covered = np.full(len(rows), np.nan)
        for i, ticker in enumerate(tickers):
            last = state.get(ticker)
            alpha[i] = TARGET_MISCOVERAGE if last is None else last[1]
            if last is None or last[0] != before or (learn_after and last[0] <= learn_after):
                continue
            r, prev = r_all[at[i]], prev_all[at[i]]
            if prev == before and not np.isnan(r):
                covered[i] = float(last[2] <= r <= last[3])
        alpha = aci_step(alpha, covered, gamma)
        drawn = []
        for served_by, part in rows.assign(alpha=alpha, covered=covered).groupby("served_by"):
            bundle = bundles[served_by]
            frame = with_interval(bundle, part, part["alpha"].to_numpy())
            frame["served_by"] = served_by
            frame["covered"] = part["covered"].to_numpy()
            frame["q"] = (
                quantile(bundle.scores, frame["alpha"].to_numpy())
                if bundle.scores
                else np.full(len(frame), np.nan)
            )
            drawn.append(frame)
        frame = pd.concat(drawn, ignore_index=True)
        for row in frame.itertuples():
            state[row.ticker] = (day, row.alpha, row.lower_return, row.upper_return)
        out_frames.append(frame.drop(columns=["covered", "q"]))
        state_rows.append(frame.rename(columns={"as_of_date": "trade_date"})[list(STATE_COLUMNS)])
    if not out_frames:
        return preds.iloc[0:0], pd.DataFrame(columns=list(STATE_COLUMNS))
    return (
        pd.concat(out_frames, ignore_index=True),
        pd.concat(state_rows, ignore_index=True),
    )
