"""The MLflow side: tracking set-up, logging forecasters, and who holds the `production` alias.

Every move of the alias — bootstrap, promotion, manual promote, rollback — goes through
`move_alias`, which writes its `model_promotions` row in the same database transaction it commits
only after the alias has moved, so a failure leaves neither a moved alias nor a row.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from stock_assets.ml.bundle import NAIVE, Bundle
from stock_assets.ml.candidate import Candidate
from stock_assets.ml.metrics import conformal_quantile
from stock_assets.runtime.postgres import ready_server, redact
from stock_assets.settings import Settings, load_settings
from stock_assets.storage.schema import MODEL_PROMOTIONS_DDL as PROMOTIONS_DDL
from stock_assets.storage.schema import PRODUCTION_ALIAS as ALIAS
from stock_assets.storage.writer import note_write

EXPERIMENT = "stock_assets"
PIP_REQUIREMENTS = ["mlflow", "torch==2.13.0", "pandas<3", "numpy", "ta-lib", "stock_assets"]
NAIVE_RESIDUAL_SESSIONS = 250


class RegistryError(RuntimeError):
    """The registry or tracking store is unreachable or holds something unusable."""


def tracking_uri(settings: Settings | None = None) -> str:
    """MLFLOW_TRACKING_URI when set (stock-assets env sets it), else the platform's store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or ready_server(
        settings or load_settings()
    ).for_db("mlflow", driver="psycopg2")


def setup(settings: Settings | None = None) -> str:
    """Point MLflow at the platform's store and artifact folder; returns the experiment id."""
    settings = settings or load_settings()
    return configure(tracking_uri(settings), settings.mlflow_artifacts)


def configure(tracking_uri: str, artifact_root: Path) -> str:
    """Point MLflow at the platform's store; returns the experiment id (created when missing)."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if tracking_uri.startswith("postgresql"):
        # Fail fast: MLflow's own store retries a dead server for minutes before it gives up.
        import psycopg2

        libpq = "postgresql://" + tracking_uri.split("://", 1)[1]
        try:
            psycopg2.connect(libpq, connect_timeout=10).close()
        except psycopg2.OperationalError as exc:
            raise RegistryError(
                f"MLflow tracking store unreachable at {redact(tracking_uri)}: {exc}".strip()
            ) from exc
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        experiment = mlflow.get_experiment_by_name(EXPERIMENT)
        if experiment is None and tracking_uri.startswith(("http://", "https://")):
            # a tracking server (`--serve-artifacts`) owns the artifacts: clients upload over
            # HTTP and never write the store's files, so no volume permissions to get wrong
            mlflow.create_experiment(EXPERIMENT)
        elif experiment is None:
            artifact_root.mkdir(parents=True, exist_ok=True)
            mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_root.as_uri())
        # the active experiment: a run started anywhere (the naive bootstrap too) lands here,
        # with artifacts under the state folder — never in ./mlruns of the working directory
        return mlflow.set_experiment(EXPERIMENT).experiment_id
    except Exception as exc:
        raise RegistryError(
            f"MLflow tracking store unreachable at {redact(tracking_uri)}: {exc}"
        ) from exc


def log_forecaster(
    bundle: Bundle,
    net: Any,
    model_name: str,
    input_example: pd.DataFrame,
    tags: dict[str, str],
) -> str:
    """Log the pyfunc model in the active run and register it; returns the new version."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    from stock_assets.ml import mlflow_model_code
    from stock_assets.ml.bundle import predict_from_prices

    with tempfile.TemporaryDirectory() as tmp:
        artifacts = {"bundle": str(Path(tmp) / "bundle.json")}
        bundle.save(Path(artifacts["bundle"]))
        if net is not None:
            artifacts["weights"] = str(Path(tmp) / "weights.pt")
            torch.save(net.state_dict(), artifacts["weights"])
        example = input_example.assign(trade_date=input_example["trade_date"].astype(str))
        output = predict_from_prices(bundle, net, input_example)
        output = output.assign(as_of_date=output["as_of_date"].astype(str))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=mlflow_model_code.__file__,  # model from code: no pickle
            artifacts=artifacts,
            signature=infer_signature(
                example, output.assign(as_of_date=output["as_of_date"].astype(str))
            ),
            input_example=example,
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=model_name,
        )
        mlflow.log_dict(bundle.scalers, "scalers.json")
        mlflow.log_dict(
            {"features": bundle.features, "tickers": bundle.tickers, "seq_len": bundle.seq_len},
            "model_inputs.json",
        )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    return version


def log_candidate(
    candidate: Candidate, prices: pd.DataFrame, model_name: str, dagster_run_id: str
) -> str:
    """Log a fitted candidate's parameters, test metrics and model in the active MLflow run,
    and register it; returns the new version."""
    import mlflow

    bundle, config = candidate.bundle, candidate.config
    mlflow.log_params(
        {
            "dataset_run_id": bundle.dataset_run_id,
            "cutoff": bundle.cutoff,
            "dagster_run_id": dagster_run_id,
            **{f"model_{k}": v for k, v in config.model_params().items()},
            "half_width": bundle.half_width,
            "tickers": ",".join(bundle.tickers),
        }
    )
    mlflow.log_metrics(
        {
            f"test_{who}_{m}": float(v)
            for who, row in candidate.table.items()
            for m, v in row.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
    )
    mlflow.log_metric("best_val_loss", candidate.result.best_val_loss)
    example = prices.groupby("ticker").tail(bundle.history_needed() + 1)
    tags = {
        "dataset_run_id": str(bundle.dataset_run_id),
        "kind": config.arch,
        "cutoff": str(bundle.cutoff),
        "dagster_run_id": dagster_run_id,
    }
    return log_forecaster(bundle, candidate.net, model_name, example, tags)


@dataclass(frozen=True)
class Production:
    version: str
    kind: str
    cutoff: str | None
    dataset_run_id: str | None
    run_id: str | None


def production(model_name: str) -> Production | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(model_name, ALIAS)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise RegistryError(f"cannot read alias {ALIAS!r} of {model_name!r}: {exc}") from exc
    tags = mv.tags or {}
    return Production(
        version=str(mv.version),
        kind=tags.get("kind", "unknown"),
        cutoff=tags.get("cutoff") or None,
        dataset_run_id=tags.get("dataset_run_id") or None,
        run_id=mv.run_id,
    )


def load_production(model_name: str):
    """The production model as MLflow pyfunc, and its Bundle (tickers, cutoff, …)."""
    import mlflow

    try:
        model = mlflow.pyfunc.load_model(f"models:/{model_name}@{ALIAS}")
    except Exception as exc:
        raise RegistryError(
            f"cannot load models:/{model_name}@{ALIAS} (missing artifact?): {exc}"
        ) from exc
    return model, model.unwrap_python_model().bundle


def move_alias(
    conn: Any,
    model_name: str,
    version: str,
    reason: str,
    dataset_run_id: str | None = None,
    metrics: dict | None = None,
) -> str | None:
    """Point `production` at `version` and log it; returns the previous version."""
    import mlflow

    client = mlflow.MlflowClient()
    client.get_model_version(model_name, version)  # a clear error for an unknown version
    current = production(model_name)
    previous = current.version if current else None
    with conn.cursor() as cur:
        cur.execute(PROMOTIONS_DDL)
        cur.execute(
            "INSERT INTO model_promotions (model_name, previous_version, new_version, "
            "dataset_run_id, metrics, reason) VALUES (%s, %s, %s, %s, %s, %s)",
            (model_name, previous, version, dataset_run_id, json.dumps(metrics or {}), reason),
        )
        note_write(cur, "model_promotions")
        try:
            client.set_registered_model_alias(model_name, ALIAS, version)
        except Exception:
            conn.rollback()
            raise
    try:
        conn.commit()
    except Exception:
        if previous is not None:
            client.set_registered_model_alias(model_name, ALIAS, previous)
        raise
    return previous


def promotions(conn: Any, model_name: str) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(PROMOTIONS_DDL)
        cur.execute(
            "SELECT promoted_at, previous_version, new_version, dataset_run_id, reason "
            "FROM model_promotions WHERE model_name = %s ORDER BY id",
            (model_name,),
        )
        rows = cur.fetchall()
    conn.commit()
    return pd.DataFrame(
        rows, columns=["promoted_at", "previous_version", "new_version", "dataset_run_id", "reason"]
    )


def undo_target(history: list[tuple[str | None, str]], current: str) -> str:
    """Pure: from the alias moves (previous, new), oldest first, the version that the newest
    move onto `current` replaced."""
    for previous, new in reversed(history):
        if new == current:
            if previous is None:
                break
            return str(previous)
    raise RegistryError(f"version {current} replaced nothing: nothing to roll back to")


def rollback_target(conn: Any, model_name: str) -> str:
    """The version the current production version replaced."""
    current = production(model_name)
    if current is None:
        raise RegistryError(f"no version of {model_name} holds {ALIAS!r}")
    moves = promotions(conn, model_name)
    history = list(zip(moves["previous_version"], moves["new_version"], strict=True))
    return undo_target(history, current.version)


def naive_bundle(prices: pd.DataFrame, tickers: list[str]) -> Bundle:
    """The naive model: tomorrow = today, 80 % interval from recent absolute returns."""
    import numpy as np

    recent = []
    for _, rows in prices.sort_values("trade_date").groupby("ticker"):
        r = np.diff(np.log(rows["close"].to_numpy(float)))[-NAIVE_RESIDUAL_SESSIONS:]
        recent.append(r)
    half_width = conformal_quantile(np.concatenate(recent)) if recent else 0.02
    return Bundle(kind=NAIVE, tickers=sorted(tickers), half_width=half_width)


def ensure_production(conn: Any, model_name: str, prices: pd.DataFrame) -> Production:
    """The production model; on an empty registry, register naive and give it the alias."""
    import mlflow

    current = production(model_name)
    if current is not None:
        return current
    tickers = sorted(prices["ticker"].unique())
    bundle = naive_bundle(prices, tickers)
    example = prices.sort_values("trade_date").groupby("ticker").tail(3)
    nested = mlflow.active_run() is not None
    with mlflow.start_run(run_name="naive-bootstrap", nested=nested):
        mlflow.log_params({"kind": NAIVE, "half_width": bundle.half_width})
        version = log_forecaster(bundle, None, model_name, example, {"kind": NAIVE})
    move_alias(conn, model_name, version, "bootstrap")
    result = production(model_name)
    assert result is not None
    return result
