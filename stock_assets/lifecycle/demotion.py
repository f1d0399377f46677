"""When a learned production model goes back to naive. Pure: the sensor reads the serving
version's scored rows, `verdict` rules on them.

The promotion check judges a candidate on its test window, which ends at its cutoff. After that
only the out-of-sample record says whether it still earns its place. On daily closes a learned
model is expected to be about as good as "tomorrow = today", so the bar is evidence of being
worse, not a failure to be better: over the newest `demotion_sessions` scored sessions of the
version serving now, a one-sided Diebold–Mariano test on per-session mean absolute percentage
errors (model − naive; one number per session, because same-day errors of correlated tickers
are not independent) must not reject "no worse than naive" at `demotion_significance`.
Only rows of the serving version count, so a newly promoted model has a fresh window, which is
the cooldown: nothing is demoted before it served `demotion_sessions` sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stock_assets.ml.bundle import NAIVE
from stock_assets.ml.metrics import diebold_mariano
from stock_assets.settings import PolicySettings

DEMOTION_REASON = "demotion"  # model_promotions.reason starts with it


@dataclass(frozen=True)
class Verdict:
    demote: bool
    reason: str
    sessions: int = 0
    skill: float | None = None
    p_value: float | None = None  # one-sided: that production is no worse than naive


def _scored(rows: pd.DataFrame) -> pd.DataFrame:
    """Out-of-sample rows whose target session has closed."""
    return rows[~rows["in_sample"].astype(bool) & rows["actual_close"].notna()]


def session_errors(rows: pd.DataFrame) -> pd.DataFrame:
    """Per scored session: mean absolute percentage error of the model and of naive."""
    scored = _scored(rows)
    actual = scored["actual_close"].astype(float)
    frame = pd.DataFrame(
        {
            "trade_date": scored["trade_date"],
            "model": scored["abs_error"].astype(float) / actual * 100,
            "naive": scored["naive_abs_error"].astype(float) / actual * 100,
        }
    )
    return frame.groupby("trade_date", sort=True)[["model", "naive"]].mean().reset_index()


def verdict(rows: pd.DataFrame, version: str, kind: str | None, t: PolicySettings) -> Verdict:
    """Whether production version `version` (of `kind`) should give way to naive, from its own
    scored rows (performance_log columns)."""
    if t.demotion_significance <= 0:
        return Verdict(False, "demotion is off (STOCK_ASSETS_DEMOTION_SIGNIFICANCE=0)")
    if kind in (None, NAIVE):
        return Verdict(False, f"production v{version} is {kind or 'unknown'}: nothing to demote")
    sessions = session_errors(rows).tail(t.demotion_sessions)
    n = len(sessions)
    if n < t.demotion_sessions:
        return Verdict(
            False,
            f"v{version} has {n} of {t.demotion_sessions} scored sessions for the demotion test",
            n,
        )
    model, naive = sessions["model"].to_numpy(), sessions["naive"].to_numpy()
    skill = float(1 - model.sum() / naive.sum()) if naive.sum() > 0 else None
    # diebold_mariano(one_sided) is the p-value that its first argument's errors are smaller:
    # naive first asks whether production is worse
    p = diebold_mariano(naive, model, one_sided=True)
    first, last = sessions["trade_date"].iloc[0], sessions["trade_date"].iloc[-1]
    said = (
        f"v{version} ({kind}) over {n} sessions {first} … {last}: skill vs naive "
        f"{skill:+.4f}, one-sided DM p = {p:.3g}"
        if skill is not None and np.isfinite(skill)
        else f"v{version} ({kind}) over {n} sessions: DM p = {p:.3g}"
    )
    if p < t.demotion_significance:
        return Verdict(True, f"{said} < {t.demotion_significance}: worse than naive", n, skill, p)
    return Verdict(False, f"{said}: not significantly worse than naive", n, skill, p)


def served_record(rows: pd.DataFrame, kinds: dict[str, str]) -> dict:
    """Production's out-of-sample record over `rows` (performance_log), whoever served: skill
    vs naive, the one-sided DM p-value that it was worse than naive (≥ 0.05: not significantly
    worse), and the share of sessions naive and learned versions served."""
    errors = session_errors(rows)
    if errors.empty:
        return {}
    model, naive = errors["model"].to_numpy(), errors["naive"].to_numpy()
    served = _scored(rows).groupby("trade_date")["model_version"].first().astype(str)
    naive_sessions = int(served.map(lambda v: kinds.get(v) == NAIVE).sum())
    return {
        "sessions": len(errors),
        "skill": float(1 - model.sum() / naive.sum()) if naive.sum() > 0 else float("nan"),
        "dm_p_worse": diebold_mariano(naive, model, one_sided=True),
        "naive_share": naive_sessions / len(served) if len(served) else float("nan"),
        "learned_share": 1 - naive_sessions / len(served) if len(served) else float("nan"),
    }
