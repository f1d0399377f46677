"""The promotion judgement and the rollback target as pure rules."""

from __future__ import annotations

import datetime as dt

import pytest

from stock_assets.lifecycle.promotion import common_window, mae_verdict
from stock_assets.lifecycle.registry import RegistryError, undo_target

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


def test_undo_target_is_the_version_the_current_one_replaced():
    history = [(None, "1"), ("1", "2"), ("2", "3")]
    assert undo_target(history, "3") == "2"
    assert undo_target(history, "2") == "1"
    with pytest.raises(RegistryError, match="version 1 replaced nothing"):
        undo_target(history, "1")
    with pytest.raises(RegistryError, match="version 9 replaced nothing"):
        undo_target(history, "9")
