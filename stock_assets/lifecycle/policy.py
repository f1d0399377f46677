"""When to ask for a retraining. Pure: the sensor gathers facts, `decide` rules on them.

Shipped defaults (`PolicySettings` in `stock_assets/settings.py`), for daily closes of indices and
large caps (where the naive model's MAPE is about 0.7–1.5 % and a learned model lands within a few
per cent of naive):
- skill_floor −0.05 for 5 sessions: a model 5 % worse than "tomorrow = today" for a trading
  week has stopped earning its place; one bad day is noise, five in a row is not.
- mape_ceiling 3 %: about three times a normal day's absolute move: prices left the regime the
  model learned (the Q4-2018 kind of volatility), whatever naive does.
- coverage_significance 0.01: the 80 % interval's hits over the rolling window are judged by
  an exact two-sided binomial test against 0.8, so the band widens and narrows with the number
  of scored predictions (20 sessions × 2 tickers: about 0.62–0.95; × 500 tickers: 0.78–0.82)
  instead of one fixed band. At 1 % a calibrated interval triggers it about once in a hundred
  independent windows; same-day hits of correlated tickers are not independent, which makes
  the test somewhat eager in a crisis — the interval's own adaptation (ACI) answers first.
- min_scored 10: a summary of fewer out-of-sample rows says nothing.
- stale_sessions 60 (a quarter): try a challenger even while nothing degrades.
- cooldown_sessions 10: at most one retraining per two weeks from degradation alone.
- first_model_sessions 750 (three years): enough history for warm-up, gaps and four splits.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from stock_assets.lifecycle.dataset_runs import cutoff_of, next_key
from stock_assets.market.calendars import sessions_between
from stock_assets.ml.bundle import NAIVE
from stock_assets.ml.conformal import coverage_band, coverage_pvalue
from stock_assets.settings import PolicySettings as Thresholds

__all__ = ["Decision", "PolicyState", "Summary", "Thresholds", "breach", "decide"]


@dataclass
class PolicyState:
    """The sensor's cursor: the newest performance_log event evaluated, and the skill streak."""

    storage_id: int = 0
    low_skill_streak: int = 0
    # the newest session scored so far: "now" for the age rules, so a replay over stored
    # history never reads the future as the present
    newest_session: str | None = None

    def to_cursor(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_cursor(cls, cursor: str | None) -> PolicyState:
        return cls(**json.loads(cursor)) if cursor else cls()


@dataclass(frozen=True)
class Summary:
    """One performance_log materialization: its event id, session and rolling summary."""

    storage_id: int
    session: str | None
    rolling: dict


@dataclass(frozen=True)
class Decision:
    """Either a dataset run to request (key, cutoff, reason) or why not (skip)."""

    state: PolicyState
    key: str | None = None
    cutoff: dt.date | None = None
    reason: str | None = None
    skip: str | None = None


def breach(summary: dict, state: PolicyState, t: Thresholds) -> str | None:
    """Update the streak with one session's rolling summary; the reason to retrain, if any."""
    if summary.get("n", 0) < t.min_scored or "skill" not in summary:
        return None
    skill, mape, coverage = summary["skill"], summary["mape"], summary["coverage"]
    state.low_skill_streak = state.low_skill_streak + 1 if skill < t.skill_floor else 0
    if state.low_skill_streak >= t.skill_sessions:
        return (
            f"rolling skill {skill:.3f} below {t.skill_floor} for {state.low_skill_streak} sessions"
        )
    if mape > t.mape_ceiling:
        return f"rolling MAPE {mape:.2f} % above {t.mape_ceiling} %"
    n = int(summary["n"])
    hits = int(summary.get("hits", round(coverage * n)))
    p = coverage_pvalue(hits, n)
    if p < t.coverage_significance:
        low, high = coverage_band(n)
        return (
            f"rolling 80 % interval coverage {coverage:.2f} ({hits}/{n}) outside the binomial "
            f"acceptance region at {t.coverage_significance} (p = {p:.2g}; 95 % band "
            f"{low:.2f}–{high:.2f})"
        )
    return None


def sessions_after(first: dt.date, last: dt.date, exchange: str) -> int:
    """Sessions in (first, last]."""
    return max(len(sessions_between(first, last, exchange)) - 1, 0)


def _degradation(
    summaries: Sequence[Summary], state: PolicyState, t: Thresholds
) -> tuple[str | None, dt.date | None]:
    """Consume summaries up to the first breach; later ones wait for the next tick, and the
    streak starts over so one breach asks once."""
    for summary in summaries:
        state.storage_id = max(state.storage_id, summary.storage_id)
        if summary.session:
            state.newest_session = max(state.newest_session or "", summary.session)
        found = breach(summary.rolling, state, t)
        if found and summary.session:
            state.low_skill_streak = 0
            return found, dt.date.fromisoformat(summary.session)
    return None, None


def decide(
    summaries: Sequence[Summary],
    state: PolicyState,
    t: Thresholds,
    *,
    in_flight: str | None,
    dataset_runs: Sequence[str],
    span: tuple[dt.date, dt.date] | None,
    production_kind: Callable[[], str | None],
    exchange: str,
) -> Decision:
    """Every rule the retraining sensor applies, in order: degradation, in-flight run, first
    learned model, staleness, cooldown. `production_kind` is asked only when the first-model rule
    needs it (it reads the registry)."""
    reason, cutoff = _degradation(summaries, state, t)
    if in_flight:
        return Decision(state, skip=f"retraining run {in_flight} is queued or in progress")
    if span is None:
        return Decision(state, skip="raw_prices is empty")
    newest_run = max((cutoff_of(k) for k in dataset_runs), default=None)
    newest = dt.date.fromisoformat(state.newest_session) if state.newest_session else span[1]
    if reason is None and newest_run is None and production_kind() in (None, NAIVE):
        history = sessions_after(span[0], newest, exchange) + 1
        if history < t.first_model_sessions:
            return Decision(
                state,
                skip=f"waiting for history for the first model: {history} of "
                f"{t.first_model_sessions} sessions",
            )
        reason = f"first learned model: {history} sessions of history, naive serves"
        cutoff = newest
    if reason is None and newest_run is not None:
        age = sessions_after(newest_run, newest, exchange)
        if age > t.stale_sessions:
            reason = (
                f"newest dataset run ({newest_run}) is {age} sessions old (> {t.stale_sessions})"
            )
            cutoff = newest
    if reason is None or cutoff is None:
        return Decision(
            state,
            skip=f"healthy: {len(summaries)} new performance summaries, no threshold breached",
        )
    if newest_run is not None:
        since = sessions_after(newest_run, cutoff, exchange)
        if newest_run > cutoff:  # a summary older than the newest run (history, replay)
            return Decision(
                state,
                skip=f"the last retraining's cutoff {newest_run} is after {cutoff}: "
                f"it already saw that session; not acting on: {reason}",
            )
        if since < t.cooldown_sessions:
            return Decision(
                state,
                skip=f"cooldown: {since} session(s) from the last retraining cutoff "
                f"{newest_run} to {cutoff} (< {t.cooldown_sessions}); not acting on: {reason}",
            )
    return Decision(state, key=next_key(list(dataset_runs), cutoff), cutoff=cutoff, reason=reason)
