"""Optuna trials as MLflow runs read as a registry would: named by trial, a pruned trial its
own state (KILLED, tagged `pruned`), never FAILED like a crash; the parent run carries on."""

from __future__ import annotations

import mlflow
import optuna

from stock_assets.ml.tuning import tracked


def test_a_pruned_trial_ends_killed_and_tagged_not_failed(tmp_path):
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.create_experiment("trials", artifact_location=tmp_path.as_uri())
        experiment = mlflow.set_experiment("trials").experiment_id  # as configure() does

        def objective(trial: optuna.Trial) -> float:
            x = trial.suggest_float("x", 0.0, 1.0)
            if trial.number == 0:
                raise optuna.TrialPruned()
            return x

        study = optuna.create_study()
        with mlflow.start_run(experiment_id=experiment, run_name="retrain 2018-10-04") as parent:
            study.optimize(tracked(objective, "2018-10-04", "study"), n_trials=2)
            assert mlflow.active_run().info.run_id == parent.info.run_id  # still the parent's
        runs = mlflow.search_runs(
            experiment_ids=[experiment],
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
            output_format="list",
        )
        by_name = {r.info.run_name: r for r in runs}
        assert sorted(by_name) == ["trial 0", "trial 1"]
        pruned, done = by_name["trial 0"], by_name["trial 1"]
        assert pruned.info.status == "KILLED" and pruned.data.tags["pruned"] == "true"
        assert "x" in pruned.data.params and "val_loss" not in pruned.data.metrics
        assert done.info.status == "FINISHED" and "val_loss" in done.data.metrics
        assert mlflow.get_run(parent.info.run_id).info.status == "FINISHED"
        states = [t.state.name for t in study.trials]
        assert states == ["PRUNED", "COMPLETE"]
    finally:
        mlflow.set_tracking_uri(before)
        mlflow.tracking.fluent._active_experiment_id = None  # the next configure() sets its own
