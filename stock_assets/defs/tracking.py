"""dagster-mlflow's tracking resource, pointed at the platform's store, and closed for sure.

dagster-mlflow keeps one MLflow run per Dagster run and ends it only from its hook on the job's
last node; when that node is skipped (a failed blocking check) the MLflow run would stay RUNNING.
This resource also ends the run at teardown, so no run is left open whatever happened.
"""

from __future__ import annotations

import warnings

import mlflow
from dagster import BetaWarning, resource
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster_mlflow import end_mlflow_on_run_finished
from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow

from stock_assets.lifecycle.registry import EXPERIMENT, configure, tracking_uri
from stock_assets.settings import load_settings

__all__ = ["end_mlflow_on_run_finished", "mlflow_tracking_managed"]


@resource(
    config_schema={**CONFIG_SCHEMA, "experiment_name": CONFIG_SCHEMA["experiment_name"]},
    description="MLflow tracking (dagster-mlflow) on the platform's store.",
)
def mlflow_tracking_managed(context):
    uri = context.resource_config.get("mlflow_tracking_uri") or tracking_uri()
    configure(uri, load_settings().mlflow_artifacts)
    with warnings.catch_warnings():
        # dagster-mlflow marks its own class beta; the project opts in knowingly
        warnings.filterwarnings("ignore", category=BetaWarning, module=r"dagster(_mlflow)?\b")
        tracker = MlFlow(context)
    partition = context.dagster_run.tags.get(PARTITION_NAME_TAG) if context.dagster_run else None
    if partition and mlflow.active_run() is not None:
        # dagster-mlflow names the run after the job ("retrain" every time): name it after what
        # it is, the dataset run it trains
        mlflow.set_tag("mlflow.runName", f"retrain {partition}")
    try:
        yield tracker
    finally:
        if mlflow.active_run() is not None:
            mlflow.end_run()


mlflow_tracking_managed = mlflow_tracking_managed.configured({"experiment_name": EXPERIMENT})
