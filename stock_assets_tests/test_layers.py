"""The layers the architecture promises (docs/architecture.md): pure folders never load Dagster,
and the tune worker joins a study without it."""

from __future__ import annotations

import subprocess
import sys

PURE = [
    "stock_assets.settings",
    "stock_assets.market.calendars",
    "stock_assets.market.ingest",
    "stock_assets.market.quality",
    "stock_assets.market.sources",
    "stock_assets.market.validation",
    "stock_assets.ml.features",
    "stock_assets.ml.dataset",
    "stock_assets.ml.processed",
    "stock_assets.ml.tuning",
    "stock_assets.ml.candidate",
    "stock_assets.ml.bundle",
    "stock_assets.ml.charts",
    "stock_assets.ml.serving",
    "stock_assets.lifecycle.registry",
    "stock_assets.lifecycle.history",
    "stock_assets.lifecycle.journal",
    "stock_assets.lifecycle.retraining_lease",
    "stock_assets.lifecycle.policy",
    "stock_assets.lifecycle.promotion",
    "stock_assets.lifecycle.scoring",
    "stock_assets.lifecycle.dataset_runs",
    "stock_assets.storage.schema",
    "stock_assets.storage.writer",
    "stock_assets.storage.queries",
    "stock_assets.storage.prices",
    "stock_assets.storage.exports",
    "stock_assets.runtime.postgres",
    "stock_assets.runtime.alerts",
    "stock_assets.runtime.failpoints",
    "stock_assets.commands.tune_worker",
]


def test_pure_layers_and_the_tune_worker_import_no_dagster():
    code = (
        "import importlib, sys\n"
        f"for m in {PURE!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('dagster')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_definitions_do_load_dagster():
    """The check above can fail: importing the Dagster layer does bring dagster in."""
    code = "import sys, stock_assets.definitions; print('dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
