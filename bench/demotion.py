"""Production against naive over replayed years, with and without the demotion rule, side by
side on the same data (the bundled `sample` source): 2008-09-02 … 2009-06-30 and 2018.

Each replay runs in its own state folder: raw_prices backfilled from the sample's start, the
retraining sensor asks for the first learned model at the first session, and the loop runs as in
production (demo training profile: 8 Optuna trials; cooldown 20 sessions). "with" uses the
shipped demotion rule (40 sessions, one-sided DM at 5 %), "without" turns it off.

    .venv/bin/python bench/demotion.py                 # all four replays (about 40 min)
    .venv/bin/python bench/demotion.py 2018            # one span

Target: with the rule, production's skill over each replay is not significantly below zero
(one-sided DM p ≥ 0.05).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from bench._common import stop_own_server
from stock_assets.commands.demo import DEMO_RETRAINING, DEMO_THRESHOLDS
from stock_assets.commands.replay import replay_into
from stock_assets.runtime.postgres import embedded_stop
from stock_assets.settings import load_settings

SPANS = {
    "2008-09": (dt.date(2008, 9, 2), dt.date(2009, 6, 30)),
    "2018": (dt.date(2018, 1, 2), dt.date(2018, 12, 31)),
}


def one(span: str, rule: bool) -> dict:
    start, end = SPANS[span]
    home = Path(tempfile.mkdtemp(prefix=f"stock-assets-demotion-{span}-"))
    thresholds = dataclasses.replace(
        DEMO_THRESHOLDS, demotion_significance=load_settings().policy.demotion_significance
    )
    if not rule:
        thresholds = dataclasses.replace(thresholds, demotion_significance=0.0)
    t0 = time.monotonic()
    try:
        summary = replay_into(
            start,
            end,
            home=home,
            retraining=DEMO_RETRAINING,
            thresholds=thresholds,
            echo=lambda line: None,
        )
    finally:
        embedded_stop(home / "pgdata")
    promoted = summary.promotions
    moves = promoted[promoted["action"] == "promote"] if len(promoted) else promoted
    rec = summary.record
    return {
        "span": span,
        "rule": "with" if rule else "without",
        "sessions": summary.sessions,
        "skill": rec.get("skill", float("nan")),
        "dm_p": rec.get("dm_p_worse", float("nan")),
        "naive_share": rec.get("naive_share", float("nan")),
        "demotions": len(summary.demotions),
        "retrainings": len(summary.retrainings),
        "promotions": len(moves),
        "minutes": (time.monotonic() - t0) / 60,
    }


def main(spans: list[str]) -> None:
    rows = [one(span, rule) for span in spans for rule in (False, True)]
    print(
        f"{'span':<8} {'rule':<8} {'sessions':>8} {'skill':>8} {'DM p (worse)':>13} "
        f"{'naive share':>11} {'demotions':>9} {'retrainings':>11} {'promotions':>10} "
        f"{'min':>5}   target (with): DM p ≥ 0.05"
    )
    for r in rows:
        verdict = ""
        if r["rule"] == "with":
            verdict = "met" if r["dm_p"] >= 0.05 else "NOT met"
        print(
            f"{r['span']:<8} {r['rule']:<8} {r['sessions']:>8} {r['skill']:>+8.4f} "
            f"{r['dm_p']:>13.3f} {r['naive_share']:>11.0%} {r['demotions']:>9} "
            f"{r['retrainings']:>11} {r['promotions']:>10} {r['minutes']:>5.1f}   {verdict}"
        )


if __name__ == "__main__":
    try:
        main(sys.argv[1:] or list(SPANS))
    finally:
        stop_own_server()
