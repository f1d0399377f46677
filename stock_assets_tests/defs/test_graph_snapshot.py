"""The Definitions load, and the graph matches the committed snapshot.

After a deliberate change to the graph, rewrite the snapshot with `make snapshot`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from stock_assets.definitions import build_definitions
from stock_assets.settings import load_settings

SNAPSHOT = Path(__file__).with_name("graph_snapshot.json")


def graph_summary() -> dict:
    settings = load_settings().with_market(source="sample", tickers=None, start_date=None)
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        pdef = node.partitions_def
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": None
            if pdef is None
            else {"type": type(pdef).__name__, "repr": str(pdef)},
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "checks": sorted(c.name for c in node.check_keys),
            "backfill_policy": str(node.backfill_policy) if node.backfill_policy else None,
        }
    jobs = {
        job.name: sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys)
        for job in defs.resolve_all_job_defs()
        if not job.name.startswith("__")
    }
    schedules = {
        s.name: {"cron": s.cron_schedule, "timezone": s.execution_timezone, "job": s.job_name}
        for s in defs.schedules or []
    }
    sensors = sorted(s.name for s in defs.sensors or [])
    return {"assets": assets, "jobs": jobs, "schedules": schedules, "sensors": sensors}


def test_definitions_load_and_match_snapshot():
    summary = graph_summary()
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GRAPH_SNAPSHOT"):
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.exists(), "no snapshot yet: run `make snapshot`"
    assert json.loads(SNAPSHOT.read_text()) == summary, (
        "the asset graph changed; if on purpose, run `make snapshot` and commit the file"
    )
