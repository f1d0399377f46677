"""MLflow "model from code" entry: logging this file instead of a pickled object."""

import mlflow

from stock_assets.ml.bundle import ForecasterModel

mlflow.models.set_model(ForecasterModel())
