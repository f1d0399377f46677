"""The old system's JSON prediction files: `historical/{date}.json`, `latest_predictions.json`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd


def document(day: dt.date, rows: pd.DataFrame) -> dict:
    """One session's predictions as the old system's JSON document."""
    return {
        "as_of_date": str(day),
        "target_date": str(rows["target_date"].iloc[0]),
        "model": {
            "name": rows["model_name"].iloc[0],
            "version": rows["model_version"].iloc[0],
            "dataset_run_id": rows["dataset_run_id"].iloc[0],
        },
        "predictions": {
            r.ticker: {
                "last_close": float(r.last_close),
                "predicted_close": float(r.predicted_close),
                "lower": float(r.lower),
                "upper": float(r.upper),
                "predicted_return": float(r.predicted_return),
                "in_sample": bool(r.in_sample),
            }
            for r in rows.itertuples()
        },
    }


def write_json(path: Path, doc: dict) -> None:
    """Write beside, then rename: a reader never sees a half-written file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str, allow_nan=False))
    tmp.replace(path)


def export_predictions(folder: Path, frame: pd.DataFrame, newest: dt.date | None) -> list[Path]:
    """One file per session of `frame`; `latest_predictions.json` when it holds the newest."""
    (folder / "historical").mkdir(parents=True, exist_ok=True)
    written = []
    for day, rows in frame.groupby("as_of_date"):
        doc = document(day, rows)
        path = folder / "historical" / f"{day}.json"
        write_json(path, doc)
        written.append(path)
        if day == newest:
            write_json(folder / "latest_predictions.json", doc)
    return written
