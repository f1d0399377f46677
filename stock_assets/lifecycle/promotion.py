"""Whether a candidate beats production, on the window production never trained on.

Both models predict through their logged MLflow artifacts from the same raw prices, so the
production model is scored with its own features and scalers, and the candidate exactly as it
will serve. The naive model has no cutoff: against it the whole test window counts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stock_assets.lifecycle.journal import ensure_production
from stock_assets.lifecycle.registry import load_version
from stock_assets.ml.features import next_log_return
from stock_assets.ml.metrics import compare, diebold_mariano
from stock_assets.storage.prices import prices_until


@dataclass
class Verdict:
    passed: bool
    reason: str
    window: str = ""
    sessions: int = 0
    production_version: str = ""
    candidate_version: str = ""
    table: dict[str, dict] = field(default_factory=dict)
    terms: list[str] = field(default_factory=list)  # every term of the decision, ✓/✗
    dm_pvalue: float | None = None  # one-sided: candidate's absolute errors below production's


def _returns(model: Any, prices: pd.DataFrame, window: list[dt.date]) -> pd.DataFrame:
    """Predicted return and 80 % interval (log return) per (as_of_date, ticker)."""
    preds = model.predict(prices)
    preds = preds[preds["as_of_date"].isin(window)]
    return preds.set_index(["as_of_date", "ticker"])[
        ["predicted_return", "lower_return", "upper_return"]
    ]


def common_window(
    days: list[dt.date], test_start: dt.date, test_end: dt.date, production_cutoff: dt.date | None
) -> list[dt.date]:
    """Pure: the candidate's test sessions that production never trained on."""
    return sorted(
        d
        for d in set(days)
        if test_start <= d <= test_end and (production_cutoff is None or d > production_cutoff)
    )


def mae_verdict(candidate_mae: float, production_mae: float, margin: float) -> tuple[bool, str]:
    """Pure: the candidate passes when its MAE is below production's × (1 − margin)."""
    bar = production_mae * (1 - margin)
    passed = candidate_mae < bar
    return passed, (
        f"candidate MAE {candidate_mae:.4f} {'<' if passed else '≥'} {bar:.4f} (production MAE "
        f"{production_mae:.4f} × (1 − margin {margin}))"
    )


def gate(
    candidate: dict, production: dict, margin: float, dm_pvalue: float | None, max_p: float | None
) -> tuple[bool, list[str]]:
    """Pure: every term of the promotion decision on one window. The candidate must beat
    production's MAE by the margin, have an interval score no worse than production's (by the
    same margin), and — when `max_p` is set — a one-sided Diebold–Mariano p-value below it.
    Returns the verdict and one line per term (✓/✗)."""
    lines = []
    ok_mae, why = mae_verdict(candidate["mae"], production["mae"], margin)
    lines.append(f"{'✓' if ok_mae else '✗'} {why}")
    cand_is, prod_is = candidate.get("interval_score_pct"), production.get("interval_score_pct")
    if cand_is is None or prod_is is None:
        ok_is = False
        lines.append("✗ interval score unknown")
    else:
        bar = prod_is * (1 - margin)
        ok_is = cand_is <= bar
        lines.append(
            f"{'✓' if ok_is else '✗'} candidate interval score {cand_is:.4f} "
            f"{'≤' if ok_is else '>'} {bar:.4f} (production's {prod_is:.4f} × (1 − margin "
            f"{margin}))"
        )
    ok_dm = True
    if max_p is not None:
        ok_dm = dm_pvalue is not None and dm_pvalue < max_p
        lines.append(
            f"{'✓' if ok_dm else '✗'} one-sided Diebold–Mariano p-value {dm_pvalue:.3f} "
            f"{'<' if ok_dm else '≥'} {max_p}"
        )
    else:
        lines.append(
            f"· one-sided Diebold–Mariano p-value {dm_pvalue:.3f} (not required: "
            "STOCK_ASSETS_PROMOTION_DM_PVALUE unset)"
        )
    return ok_mae and ok_is and ok_dm, lines


def judge(
    conn: Any,
    candidate: pd.Series,
    model_name: str,
    promotion_margin: float,
    min_common_window: int,
    promotion_dm_pvalue: float | None = None,
) -> Verdict:
    """Score a candidate_model row against production on their common window. Production is
    resolved once and loaded by version: the verdict names the version it actually scored."""
    version = str(candidate.model_version)
    cand_model, cand_bundle = load_version(conn, model_name, version)
    prices = prices_until(conn, cand_bundle.tickers, pd.Timestamp(candidate.cutoff).date())
    production = ensure_production(conn, model_name, prices)
    verdict = Verdict(False, "", production_version=production.version, candidate_version=version)
    if production.version == version:
        verdict.reason = f"version {version} already holds the production alias"
        return verdict
    prod_model, prod_bundle = load_version(conn, model_name, production.version)
    test_start = pd.Timestamp(candidate.test_start).date()
    test_end = pd.Timestamp(candidate.test_end).date()
    prod_cutoff = dt.date.fromisoformat(prod_bundle.cutoff) if prod_bundle.cutoff else None
    actual = pd.Series(
        next_log_return(prices).to_numpy(),
        index=pd.MultiIndex.from_frame(prices[["trade_date", "ticker"]]),
    ).dropna()
    days = common_window(list(actual.index.get_level_values(0)), test_start, test_end, prod_cutoff)
    if days:
        verdict.window = f"{days[0]} … {days[-1]}"
    verdict.sessions = len(days)
    if len(days) < min_common_window:
        verdict.reason = (
            f"the common window has {len(days)} sessions, fewer than the minimum "
            f"{min_common_window} (candidate test {test_start} … {test_end}, production "
            f"trained through {prod_cutoff})"
        )
        return verdict
    try:
        prod_ret = _returns(prod_model, prices, days)
    except ValueError as exc:
        verdict.reason = f"production model cannot predict the candidate's tickers: {exc}"
        return verdict
    cand_ret = _returns(cand_model, prices, days)
    index = cand_ret.index.intersection(prod_ret.index).intersection(actual.index)
    close = prices.set_index(["trade_date", "ticker"])["close"].reindex(index).to_numpy()
    truth = actual.reindex(index).to_numpy()
    cand_rows, prod_rows = cand_ret.reindex(index), prod_ret.reindex(index)

    def table(rows: pd.DataFrame) -> dict[str, dict]:
        band = (rows["lower_return"].to_numpy(), rows["upper_return"].to_numpy())
        return compare(rows["predicted_return"].to_numpy(), truth, close, {"model": band})

    cand, prod = table(cand_rows), table(prod_rows)
    verdict.table = {
        f"candidate v{version}": cand["model"],
        f"production v{production.version} ({production.kind})": prod["model"],
        "naive": cand["naive"],
        "always_up": cand["always_up"],
    }
    price = close * np.exp(truth)
    dm = diebold_mariano(
        close * np.exp(cand_rows["predicted_return"].to_numpy()) - price,
        close * np.exp(prod_rows["predicted_return"].to_numpy()) - price,
        one_sided=True,
    )
    verdict.dm_pvalue = dm
    verdict.passed, verdict.terms = gate(
        cand["model"], prod["model"], promotion_margin, dm, promotion_dm_pvalue
    )
    verdict.reason = "; ".join(t[2:] for t in verdict.terms if t.startswith("✗")) or (
        "; ".join(t[2:] for t in verdict.terms if t.startswith("✓"))
    )
    return verdict
