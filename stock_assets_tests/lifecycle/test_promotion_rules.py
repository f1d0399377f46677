"""The promotion judgement and the rollback target as pure rules."""

from __future__ import annotations

import datetime as dt

import pytest

from stock_assets.lifecycle.history import Move, NothingToUndo, production_stack, undo_target
from stock_assets.lifecycle.promotion import common_window, gate, mae_verdict

DAYS = [dt.date(2019, 1, d) for d in (2, 3, 4, 7, 8, 9, 10)]


def test_common_window_is_the_test_window_after_productions_cutoff():
    start, end = dt.date(2019, 1, 3), dt.date(2019, 1, 9)
    assert common_window(DAYS, start, end, None) == DAYS[1:6]  # naive: the whole test window
    assert common_window(DAYS, start, end, dt.date(2019, 1, 7)) == DAYS[4:6]
    assert common_window(DAYS, start, end, dt.date(2019, 1, 31)) == []


def test_mae_verdict_needs_the_margin():
    passed, reason = mae_verdict(0.99, 1.0, 0.0)
    assert passed and reason.startswith("candidate MAE 0.9900 < 1.0000")
    passed, reason = mae_verdict(0.99, 1.0, 0.05)
    assert not passed and "≥ 0.9500" in reason and "margin 0.05" in reason
    assert not mae_verdict(1.0, 1.0, 0.0)[0]  # a tie is no improvement


def _moves(*rows: tuple[str | None, str, str]) -> list[Move]:
    return [Move(*row) for row in rows]


def test_two_rollbacks_after_three_promotions_land_on_the_first():
    moves = _moves((None, "1", "bootstrap"), ("1", "2", "promote"), ("2", "3", "promote"))
    assert undo_target(moves, "3") == "2"
    moves += _moves(("3", "2", "rollback"))
    assert undo_target(moves, "2") == "1"  # the old rule (newest move onto 2) said 3
    moves += _moves(("2", "1", "rollback"))
    assert production_stack(moves) == ["1"]
    with pytest.raises(NothingToUndo, match="version 1 replaced nothing that is left to undo"):
        undo_target(moves, "1")


def test_rollback_to_any_version_that_served_before():
    moves = _moves((None, "1", "bootstrap"), ("1", "2", "promote"), ("2", "3", "promote"))
    assert undo_target(moves, "3", to="1") == "1"
    moves += _moves(("3", "1", "rollback"))
    assert production_stack(moves) == ["1"]
    assert undo_target(moves, "1", to="3") == "3"  # an undone version may come back
    with pytest.raises(NothingToUndo, match="version 7 never held production"):
        undo_target(moves, "1", to="7")
    with pytest.raises(NothingToUndo, match="version 1 already holds production"):
        undo_target(moves, "1", to="1")


def test_a_repeated_promotion_does_not_hide_the_version_before():
    moves = _moves((None, "1", "bootstrap"), ("1", "2", "promote"), ("2", "2", "promote"))
    assert undo_target(moves, "2") == "1"


def test_alias_moved_outside_the_journal_is_undone_to_the_journals_top():
    moves = _moves((None, "1", "bootstrap"), ("1", "2", "promote"))
    assert undo_target(moves, "5") == "2"


PRODUCTION = {"mae": 10.0, "interval_score_pct": 5.0}


def test_gate_refuses_better_mae_with_a_worse_interval_score():
    passed, terms = gate({"mae": 9.0, "interval_score_pct": 5.2}, PRODUCTION, 0.0, 0.01, None)
    assert not passed
    assert terms[0].startswith("✓ candidate MAE 9.0000 < 10.0000")
    assert terms[1] == (
        "✗ candidate interval score 5.2000 > 5.0000 (production's 5.0000 × (1 − margin 0.0))"
    )
    assert "not required" in terms[2]


def test_gate_with_the_dm_rule_on_refuses_a_noisy_win():
    better = {"mae": 9.9, "interval_score_pct": 4.9}
    assert gate(better, PRODUCTION, 0.0, 0.30, None)[0]  # rule off: MAE and score suffice
    passed, terms = gate(better, PRODUCTION, 0.0, 0.30, 0.05)
    assert not passed and terms[2] == "✗ one-sided Diebold–Mariano p-value 0.300 ≥ 0.05"
    assert gate(better, PRODUCTION, 0.0, 0.01, 0.05)[0]
