"""Run tags the platform reads and writes, and step names commands look for."""

REASON_TAG = "stock_assets/reason"  # why a retraining was asked for (sensor, CLI, replay)
KIND_TAG = "stock_assets/kind"  # the retrain job's runs carry "retraining" (run queue limits)
CHECK_STEP = "candidate_model_beats_production"  # the promotion check's step key
FAILURE_TAG = "stock_assets/failure"  # the step and error that ended a retraining run
RETRAIN_JOB = "retrain"  # the retraining group's job
