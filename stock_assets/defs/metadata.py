"""Markdown tables for run metadata in the Dagster UI."""

from __future__ import annotations

import pandas as pd
from dagster import MetadataValue

METRIC_COLUMNS = [
    "mae",
    "rmse",
    "mape",
    "directional_accuracy",
    "skill",
    "coverage",
    "coverage_band_low",
    "coverage_band_high",
    "interval_width_pct",
    "interval_score_pct",
]


def frame_md(frame: pd.DataFrame, limit: int = 20) -> MetadataValue:
    """The first `limit` rows of a frame."""
    shown = frame.head(limit).astype(str)
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in shown.itertuples(index=False)]
    if len(frame) > limit:
        lines.append(f"\n… {len(frame) - limit} more")
    return MetadataValue.md("\n".join(lines))


def metrics_md(table: dict[str, dict], columns: list[str] = METRIC_COLUMNS) -> MetadataValue:
    """One row per model (candidate, production, naive, always-up)."""
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in table.items():
        cells = []
        for c in columns:
            v = row.get(c, "")
            cells.append(f"{v:.4f}" if isinstance(v, float) else str(v))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return MetadataValue.md("\n".join(lines))
