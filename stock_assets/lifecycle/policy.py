"""When to ask for a retraining. Pure: the sensor feeds it summaries and facts, it decides.

Shipped defaults, for daily closes of indices and large caps (where the naive model's MAPE is
about 0.7–1.5 % and a learned model lands within a few per cent of naive):
- skill_floor −0.05 for 5 sessions: a model 5 % worse than "tomorrow = today" for a trading
  week has stopped earning its place; one bad day is noise, five in a row is not.
- mape_ceiling 3 %: about three times a normal day's absolute move: prices left the regime the
  model learned (the Q4-2018 kind of volatility), whatever naive does.
- coverage band 0.60–0.97 for the 80 % interval: over 20 sessions × a few tickers the binomial
  spread is ±6–9 points; outside this band the interval is mis-calibrated, not unlucky.
- min_scored 10: a summary of fewer out-of-sample rows says nothing.
- stale_sessions 60 (a quarter): try a challenger even while nothing degrades.
- cooldown_sessions 10: at most one retraining per two weeks from degradation alone.
- first_model_sessions 750 (three years): enough history for warm-up, gaps and four splits.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Thresholds:
    skill_floor: float = -0.05
    skill_sessions: int = 5
    mape_ceiling: float = 3.0
    coverage_low: float = 0.60
    coverage_high: float = 0.97
    min_scored: int = 10
    stale_sessions: int = 60
    cooldown_sessions: int = 10
    first_model_sessions: int = 750

    def validate(self) -> Thresholds:
        problems = []
        if not 0 <= self.coverage_low < self.coverage_high <= 1:
            problems.append(
                f"coverage band {self.coverage_low}–{self.coverage_high} must satisfy "
                "0 ≤ low < high ≤ 1"
            )
        if self.skill_floor >= 1:
            problems.append(f"skill_floor {self.skill_floor} ≥ 1 can never be met")
        if self.skill_sessions < 1:
            problems.append(f"skill_sessions {self.skill_sessions} must be at least 1")
        if self.mape_ceiling <= 0:
            problems.append(f"mape_ceiling {self.mape_ceiling} must be positive")
        for name in ("min_scored", "stale_sessions", "cooldown_sessions", "first_model_sessions"):
            if getattr(self, name) < 0:
                problems.append(f"{name} {getattr(self, name)} must not be negative")
        if problems:
            raise ValueError("impossible retraining thresholds: " + "; ".join(problems))
        return self


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
    if not t.coverage_low <= coverage <= t.coverage_high:
        return (
            f"rolling 80 % interval coverage {coverage:.2f} outside "
            f"{t.coverage_low}–{t.coverage_high}"
        )
    return None
