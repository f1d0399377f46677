"""Small PNG charts for asset metadata, as markdown a person sees in the Dagster UI."""

from __future__ import annotations

import base64
import io

import pandas as pd

CHART_TICKERS = 5  # a chart of 500 lines says nothing and took 4.8 s per run


def price_chart_markdown(frame: pd.DataFrame, title: str) -> str:
    """Closes of the first CHART_TICKERS tickers (the title says when there are more)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tickers = sorted(frame["ticker"].unique())
    if len(tickers) > CHART_TICKERS:
        title = f"{title} (first {CHART_TICKERS} of {len(tickers)} tickers)"
        frame = frame[frame["ticker"].isin(tickers[:CHART_TICKERS])]
    fig, ax = plt.subplots(figsize=(7, 3), dpi=80)
    for ticker, rows in frame.groupby("ticker"):
        ax.plot(pd.to_datetime(rows["trade_date"]), rows["close"], marker=".", label=ticker)
    ax.set_title(title)
    ax.set_ylabel("close")
    ax.legend(loc="best", fontsize="small")
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    encoded = base64.b64encode(buf.getvalue()).decode()
    return f"![{title}](data:image/png;base64,{encoded})"


def history_chart_markdown(values: list[float], title: str) -> str:
    """Objective value per trial with the running best: Optuna's optimization history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    ax.plot(range(len(values)), values, "o", label="trial")
    if values:
        ax.plot(range(len(values)), np.minimum.accumulate(values), "-", label="best so far")
    ax.set_title(title)
    ax.set_xlabel("trial")
    ax.legend(loc="best", fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def prediction_chart_markdown(rows: pd.DataFrame, title: str) -> str:
    """Actual closes with predicted closes and their intervals (last 60 sessions, at most
    CHART_TICKERS tickers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3), dpi=80)
    shown = sorted(rows["ticker"].unique())[:CHART_TICKERS]
    for ticker, r in rows[rows["ticker"].isin(shown)].sort_values("trade_date").groupby("ticker"):
        r = r.tail(60)
        days = pd.to_datetime(r["trade_date"])
        ax.plot(days, r["actual_close"], "-", label=f"{ticker} actual")
        ax.plot(days, r["predicted_close"], ".", label=f"{ticker} predicted")
        ax.fill_between(days, r["lower"].astype(float), r["upper"].astype(float), alpha=0.2)
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"
