"""Dagster definitions only: assets by domain, checks, sensors, schedules, jobs, resources.

The project opts into two beta APIs knowingly — single-run backfills (`backfill_policy`) and
dagster-mlflow's tracking resource and hook — so their BetaWarnings are filtered here, by
category and message; any other warning still shows.
"""

import warnings

from dagster import BetaWarning

warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy`", category=BetaWarning)
# (the MlFlow resource's own warning is filtered where it is built: defs/tracking.py)
warnings.filterwarnings(
    "ignore", message=r"Function `_create_mlflow_run_hook`", category=BetaWarning
)
