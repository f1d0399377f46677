"""Small PNG charts for asset metadata, as markdown a person sees in the Dagster UI."""

from __future__ import annotations

import base64
import io
from xml.sax.saxutils import escape

import pandas as pd

CHART_TICKERS = 5  # a chart of 500 lines says nothing and took 4.8 s per run


def indexed_closes(frame: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """Closes per session (rows) and ticker (columns), each indexed to 100 at its first close
    in the window when there is more than one ticker: ^GSPC near 2,700 and ^IXIC near 7,500 on
    one price axis are two flat lines. One ticker keeps its prices."""
    wide = frame.pivot_table(index="trade_date", columns="ticker", values="close").sort_index()
    wide.index = pd.to_datetime(wide.index).date
    if wide.shape[1] <= 1:
        return wide, False
    first = wide.apply(lambda column: column.dropna().iloc[0] if column.notna().any() else None)
    return wide / first * 100.0, True


def session_ticks(days: list, most: int = 6) -> tuple[list[int], list[str]]:
    """Positions and date labels for at most `most` ticks, on sessions: the x axis is the
    session's position, so no weekend gaps and no noon ticks between two sessions."""
    if not days:
        return [], []
    step = max(1, -(-len(days) // most))
    positions = list(range(0, len(days), step))
    if positions[-1] != len(days) - 1 and len(days) - 1 - positions[-1] >= step / 2:
        positions.append(len(days) - 1)
    return positions, [str(days[i]) for i in positions]


def price_chart_markdown(frame: pd.DataFrame, title: str) -> str:
    """Closes of the first CHART_TICKERS tickers (the title says when there are more), indexed
    to 100 at the window's start when there are several."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tickers = sorted(frame["ticker"].unique())
    if len(tickers) > CHART_TICKERS:
        title = f"{title} (first {CHART_TICKERS} of {len(tickers)} tickers)"
        frame = frame[frame["ticker"].isin(tickers[:CHART_TICKERS])]
    wide, indexed = indexed_closes(frame)
    days = list(wide.index)
    fig, ax = plt.subplots(figsize=(7, 3), dpi=80)
    for ticker in wide.columns:
        ax.plot(range(len(days)), wide[ticker].to_numpy(float), marker=".", label=ticker)
    positions, labels = session_ticks(days)
    ax.set_xticks(positions, labels, rotation=30, ha="right", fontsize="small")
    ax.set_title(title)
    ax.set_ylabel(f"close, {days[0]} = 100" if indexed and days else "close")
    ax.legend(loc="best", fontsize="small")
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


COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")  # one per shown ticker


def prediction_chart_markdown(rows: pd.DataFrame, title: str) -> str:
    """Actual closes with predicted closes and their intervals (last 60 sessions, at most
    CHART_TICKERS tickers), as SVG: the daily cycle draws it every run, and importing
    matplotlib for it cost 0.5 s of a 5 s cycle."""
    import numpy as np

    width, height, left, right, top, bottom = 620, 250, 58, 150, 26, 30
    shown = sorted(rows["ticker"].unique())[:CHART_TICKERS]
    series = [
        (ticker, r.tail(60))
        for ticker, r in rows[rows["ticker"].isin(shown)]
        .sort_values("trade_date")
        .groupby("ticker")
    ]
    indexed = len(series) > 1  # several price levels on one axis flatten each other
    if indexed:
        series = [(ticker, _indexed_window(r)) for ticker, r in series]
    days = sorted({d for _, r in series for d in pd.to_datetime(r["trade_date"]).dt.date})
    values = np.concatenate(
        [r[c].to_numpy(float) for _, r in series for c in ("actual_close", "lower", "upper")]
    )
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    first = days[0].toordinal() if days else 0
    span = max((days[-1].toordinal() - first) if days else 1, 1)

    def x(day) -> float:
        return left + (pd.Timestamp(day).date().toordinal() - first) / span * (width - left - right)

    def y(value: float) -> float:
        return top + (hi - value) / (hi - lo) * (height - top - bottom)

    def text(x_: float, y_: float, label: str, anchor: str = "start", size: int = 11) -> str:
        return (
            f'<text x="{x_:.1f}" y="{y_:.1f}" font-size="{size}" text-anchor="{anchor}">'
            f"{escape(label)}</text>"
        )

    parts = [
        text(width / 2, 16, title, "middle", 13),
        f'<rect x="{left}" y="{top}" width="{width - left - right}" '
        f'height="{height - top - bottom}" fill="none" stroke="#888"/>',
    ]
    for value in (lo, (lo + hi) / 2, hi):
        parts.append(text(left - 4, y(value) + 4, f"{value:,.2f}", "end", 10))
    if indexed:
        parts.append(text(left, top - 4, "each ticker = 100 at its first close shown", size=10))
    if days:
        parts.append(text(left, height - 10, str(days[0]), "start", 10))
        parts.append(text(width - right, height - 10, str(days[-1]), "end", 10))
    for n, (ticker, r) in enumerate(series):
        color = COLORS[n % len(COLORS)]
        band = r.dropna(subset=["lower", "upper"])
        edge = [(x(d), y(v)) for d, v in zip(band["trade_date"], band["upper"], strict=True)]
        edge += [
            (x(d), y(v)) for d, v in zip(band["trade_date"][::-1], band["lower"][::-1], strict=True)
        ]
        parts.append(
            f'<polygon points="{_points(edge)}" fill="{color}" fill-opacity="0.2" stroke="none"/>'
        )
        seen = r.dropna(subset=["actual_close"])
        line = [(x(d), y(v)) for d, v in zip(seen["trade_date"], seen["actual_close"], strict=True)]
        parts.append(f'<polyline points="{_points(line)}" fill="none" stroke="{color}"/>')
        parts += [
            f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="1.8" fill="{color}"/>'
            for d, v in zip(r["trade_date"], r["predicted_close"], strict=True)
            if np.isfinite(v)
        ]
        key = top + 8 + 30 * n
        parts.append(
            f'<line x1="{width - right + 10}" y1="{key}" x2="{width - right + 26}" y2="{key}" '
            f'stroke="{color}"/>'
        )
        parts.append(text(width - right + 30, key + 4, f"{ticker} actual", size=10))
        parts.append(f'<circle cx="{width - right + 18}" cy="{key + 14}" r="2" fill="{color}"/>')
        parts.append(text(width - right + 30, key + 18, f"{ticker} predicted", size=10))
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
        + "".join(parts)
        + "</svg>"
    )
    encoded = base64.b64encode(svg.encode()).decode()
    return f"![{title}](data:image/svg+xml;base64,{encoded})"


def _indexed_window(rows: pd.DataFrame) -> pd.DataFrame:
    """A ticker's closes, predictions and bounds over its first actual close shown, × 100."""
    known = rows["actual_close"].dropna()
    base = float(known.iloc[0]) if len(known) else float(rows["predicted_close"].dropna().iloc[0])
    columns = ["actual_close", "predicted_close", "lower", "upper"]
    return rows.assign(**{c: rows[c].astype(float) / base * 100.0 for c in columns})


def _points(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
