"""The retraining policy as a pure function: every rule the sensor applies, no Dagster, no DB."""

from __future__ import annotations

import datetime as dt

import pytest

from stock_assets.lifecycle.policy import PolicyState, Summary, Thresholds, decide

SPAN = (dt.date(2015, 1, 2), dt.date(2019, 6, 28))
HEALTHY = {"n": 40, "skill": 0.01, "mape": 1.0, "coverage": 0.8}
BAD_SKILL = {"n": 40, "skill": -0.2, "mape": 1.0, "coverage": 0.8}


def _decide(summaries=(), state=None, t=None, **facts):
    asked = []

    def kind():
        asked.append(True)
        return facts.pop("_kind", "lstm")

    args = dict(in_flight=None, dataset_runs=["2019-05-01"], span=SPAN, exchange="XNYS")
    args.update({k: v for k, v in facts.items() if not k.startswith("_")})
    decision = decide(
        list(summaries), state or PolicyState(), t or Thresholds(), production_kind=kind, **args
    )
    return decision, asked


def _days(n: int, rolling: dict, start: int = 1) -> list[Summary]:
    return [
        Summary(start + i, str(dt.date(2019, 6, 3) + dt.timedelta(days=i)), rolling)
        for i in range(n)
    ]


def test_healthy_summaries_ask_nothing_and_move_the_cursor():
    decision, asked = _decide(_days(3, HEALTHY))
    assert decision.key is None and decision.skip.startswith("healthy: 3 new")
    assert decision.state.storage_id == 3 and decision.state.newest_session == "2019-06-05"
    assert not asked  # the registry is read only for the first-model rule


def test_low_skill_streak_asks_once_with_that_session_as_cutoff():
    decision, _ = _decide(_days(5, BAD_SKILL))
    assert decision.key == "2019-06-07" and decision.cutoff == dt.date(2019, 6, 7)
    assert "below -0.05 for 5 sessions" in decision.reason
    assert decision.state.low_skill_streak == 0  # one breach asks once
    four, _ = _decide(_days(4, BAD_SKILL))
    assert four.key is None and four.state.low_skill_streak == 4


def test_later_summaries_wait_for_the_next_tick():
    summaries = _days(5, BAD_SKILL) + _days(2, HEALTHY, start=6)
    decision, _ = _decide(summaries)
    assert decision.key is not None and decision.state.storage_id == 5


def test_run_in_flight_and_empty_prices_skip():
    busy, _ = _decide(_days(5, BAD_SKILL), in_flight="abc")
    assert busy.key is None and "abc is queued or in progress" in busy.skip
    empty, _ = _decide(span=None)
    assert empty.skip == "raw_prices is empty"


def test_first_learned_model_waits_for_history_then_asks():
    short = Thresholds(first_model_sessions=5000)
    waiting, asked = _decide(dataset_runs=[], t=short, _kind="naive")
    assert waiting.key is None and "waiting for history for the first model" in waiting.skip
    assert asked
    ready, _ = _decide(dataset_runs=[], _kind=None)
    assert ready.key == str(SPAN[1]) and ready.reason.startswith("first learned model")
    learned, _ = _decide(dataset_runs=[], _kind="lstm")
    assert learned.key is None  # a learned production model and no runs: nothing to do


def test_stale_newest_run_asks_and_a_recent_one_cools_down():
    stale, _ = _decide(dataset_runs=["2018-06-29"])
    assert stale.key == "2019-06-28" and "sessions old (> 60)" in stale.reason
    recent = ["2019-06-03"]
    cooling, _ = _decide(_days(5, BAD_SKILL), dataset_runs=recent)
    assert cooling.key is None
    assert cooling.skip.startswith("cooldown: 4 session(s) from the last retraining cutoff ")
    assert "2019-06-03 to 2019-06-07 (< 10)" in cooling.skip


def test_a_breach_older_than_the_newest_run_says_so():
    """A sensor evaluating stored history meets sessions before the newest run's cutoff: the
    message must not call that cutoff '0 sessions before' the session."""
    older, _ = _decide(_days(5, BAD_SKILL), dataset_runs=["2019-07-31"])
    assert older.key is None
    assert older.skip.startswith(
        "the last retraining's cutoff 2019-07-31 is after 2019-06-07: it already saw that session"
    )
    assert "sessions before" not in older.skip


def test_a_second_run_with_the_same_cutoff_gets_a_new_key():
    decision, _ = _decide(_days(5, BAD_SKILL), dataset_runs=["2019-05-01", "2019-06-07"])
    assert decision.key is None  # cooldown: 0 sessions since the same cutoff
    no_cooldown = Thresholds(cooldown_sessions=0)
    again, _ = _decide(_days(5, BAD_SKILL), t=no_cooldown, dataset_runs=["2019-06-07"])
    assert again.key == "2019-06-07.r2"


def test_impossible_thresholds_are_named():
    with pytest.raises(ValueError, match=r"skill_sessions 0 must be at least 1"):
        Thresholds(skill_sessions=0).validate()


def test_cursor_round_trip():
    state = PolicyState(storage_id=7, low_skill_streak=2, newest_session="2019-06-28")
    assert PolicyState.from_cursor(state.to_cursor()) == state
    assert PolicyState.from_cursor(None) == PolicyState()


@pytest.mark.parametrize(
    ("n", "hits", "fires"),
    [(40, 32, False), (40, 25, False), (40, 22, True), (40, 39, True), (1000, 760, True)],
)
def test_coverage_rule_is_a_binomial_test_that_scales_with_the_window(n, hits, fires):
    """25/40 (0.62) is within what an exact 80 % interval shows on 40 points at 1 %; 760/1000
    (0.76) is not: the band narrows with the number of scored predictions."""
    summary = {"n": n, "skill": 0.0, "mape": 1.0, "coverage": hits / n, "hits": hits}
    decision, _ = _decide(_days(1, summary))
    assert (decision.key is not None) is fires, decision.skip or decision.reason
    if fires:
        assert f"({hits}/{n})" in decision.reason and "binomial" in decision.reason
