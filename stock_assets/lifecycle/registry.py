"""The MLflow side: tracking set-up, logging forecasters, reading who holds `production`, and
loading one pinned version whose files are verified against digests kept in Postgres.

Moving the alias is `lifecycle/journal.py`'s job alone.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from stock_assets.ml.bundle import NAIVE, Bundle
from stock_assets.ml.candidate import Candidate
from stock_assets.ml.conformal import TARGET_MISCOVERAGE, compact, quantile, scores
from stock_assets.ml.features import next_log_return
from stock_assets.ml.volatility import EWMA_LAMBDA, next_session_sigma
from stock_assets.runtime.postgres import ready_server, redact
from stock_assets.settings import Settings, load_settings
from stock_assets.storage.schema import MODEL_DIGESTS_DDL
from stock_assets.storage.schema import PRODUCTION_ALIAS as ALIAS
from stock_assets.storage.writer import ensure_table

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
            conn = psycopg2.connect(libpq, connect_timeout=10)
        except psycopg2.OperationalError as exc:
            raise RegistryError(
                f"MLflow tracking store unreachable at {redact(tracking_uri)}: {exc}".strip()
            ) from exc
        try:
            relocate_artifacts(conn, artifact_root.as_uri())
        finally:
            conn.close()
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


# Where MLflow's SQL store writes artifact locations, as absolute URIs (MLflow 3.17).
ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
)


def relocate_artifacts(conn: Any, root_uri: str) -> int:
    """Make a moved or copied state folder use its own artifacts; returns the rows rewritten.

    MLflow stores `file:///<old home>/mlartifacts/...` in its database, so a copy of a state
    folder would read (and write new runs into) the original's folder, or fail once it is gone.
    When the platform experiment's location is a file URI other than `root_uri`, every stored
    location under the old root is moved under the new one, in one transaction. A store on a
    tracking server (`mlflow-artifacts:`) or not yet created is left alone."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('experiments') IS NOT NULL")
        if not cur.fetchone()[0]:
            conn.rollback()
            return 0
        cur.execute("SELECT artifact_location FROM experiments WHERE name = %s", (EXPERIMENT,))
        row = cur.fetchone()
        old = row[0] if row else None
        if not old or old == root_uri or not old.startswith("file:"):
            conn.rollback()
            return 0
        moved = 0
        for table, column in ARTIFACT_COLUMNS:
            cur.execute(
                f"UPDATE {table} SET {column} = %s || substr({column}, %s) "
                f"WHERE {column} = %s OR starts_with({column}, %s)",
                (root_uri, len(old) + 1, old, old + "/"),
            )
            moved += cur.rowcount
    conn.commit()
    return moved


def log_forecaster(
    conn: Any,
    bundle: Bundle,
    net: Any,
    model_name: str,
    input_example: pd.DataFrame,
    tags: dict[str, str],
    description: str = "",
) -> str:
    """Log the pyfunc model in the active run, register it and pin its files' digests;
    returns the new version. The model and the version get descriptions: the MLflow UI reads
    as a registry (what each version is and how it scored), not as a log."""
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
        sources = {
            CODE_FILE: Path(mlflow_model_code.__file__),
            "artifacts/bundle.json": Path(artifacts["bundle"]),
        }
        if "weights" in artifacts:
            sources["artifacts/weights.pt"] = Path(artifacts["weights"])
        digests = _pin(conn, model_name, version, sources)
    client = mlflow.MlflowClient()
    for key, value in {**tags, **digests.tags()}.items():
        client.set_model_version_tag(model_name, version, key, value)
    client.update_registered_model(model_name, description=MODEL_DESCRIPTION)
    if description:
        client.update_model_version(model_name, version, description=description)
    return version


MODEL_DESCRIPTION = (
    "Next-session close forecasts with an 80 % interval, one version per retraining (a "
    "PyTorch sequence model tuned by Optuna) or the naive model (tomorrow = today). The alias "
    "`production` marks the version daily_predictions serve; every move of it, with its reason, "
    "is in the model_promotions table (`stock-assets promotions`)."
)


def candidate_description(candidate: Candidate) -> str:
    """Kind, cutoff, test window and test metrics next to naive, in one paragraph."""
    bundle, table = candidate.bundle, candidate.table
    first, last = candidate.test_window
    model, naive = table["model"], table["naive"]
    return (
        f"{candidate.config.arch} forecaster, dataset run {bundle.dataset_run_id}: trained on "
        f"sessions up to {bundle.cutoff}, {bundle.seq_len}-session windows of "
        f"{len(bundle.features)} features over {len(bundle.tickers)} tickers. Test {first} … "
        f"{last}: MAE {model['mae']:.4f} vs naive {naive['mae']:.4f} (skill "
        f"{model['skill']:+.4f}), MAPE {model['mape']:.3f} %, 80 % interval coverage "
        f"{model['coverage']:.0%}."
    )


def log_candidate(
    conn: Any,
    candidate: Candidate,
    prices: pd.DataFrame,
    model_name: str,
    dagster_run_id: str,
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
    return log_forecaster(
        conn, bundle, candidate.net, model_name, example, tags, candidate_description(candidate)
    )


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


def naive_bundle(prices: pd.DataFrame, tickers: list[str]) -> Bundle:
    """The naive model: tomorrow = today; its 80 % interval is calibrated like a learned
    model's, on the last NAIVE_RESIDUAL_SESSIONS returns scaled by the same causal σ̂."""
    ordered = prices.sort_values(["ticker", "trade_date"], ignore_index=True)
    frame = pd.DataFrame(
        {
            "ticker": ordered["ticker"],
            "r": next_log_return(ordered).to_numpy(),  # the return after each row's close
            "sigma": next_session_sigma(ordered).to_numpy(),  # σ̂ made at that close
        }
    ).dropna()
    recent = frame.groupby("ticker").tail(NAIVE_RESIDUAL_SESSIONS)
    if len(recent) == 0:
        return Bundle(kind=NAIVE, tickers=sorted(tickers), half_width=0.02)
    fitted = scores(recent["r"].to_numpy(), recent["sigma"].to_numpy())
    q = float(quantile(fitted, TARGET_MISCOVERAGE))
    return Bundle(
        kind=NAIVE,
        tickers=sorted(tickers),
        half_width=float(q * recent["sigma"].median()),
        scores=compact(fitted),
        ewma_lambda=EWMA_LAMBDA,
    )


def naive_version(model_name: str) -> str | None:
    """The newest registered naive version (where a demotion goes), if any."""
    import mlflow

    versions = mlflow.MlflowClient().search_model_versions(f"name = '{model_name}'")
    naive = [int(v.version) for v in versions if v.tags.get("kind") == NAIVE]
    return str(max(naive)) if naive else None


def register_naive(conn: Any, model_name: str, prices: pd.DataFrame) -> str:
    """Register the naive model fitted on `prices`; returns its version."""
    import mlflow

    tickers = sorted(prices["ticker"].unique())
    bundle = naive_bundle(prices, tickers)
    example = prices.sort_values("trade_date").groupby("ticker").tail(3)
    nested = mlflow.active_run() is not None
    first, last = prices["trade_date"].min(), prices["trade_date"].max()
    description = (
        "naive model: the next close is today's close. Its 80 % interval "
        f"(±{bundle.half_width:.4f} in log return at median volatility) is calibrated on the last "
        f"{NAIVE_RESIDUAL_SESSIONS} volatility-scaled returns of prices {first} … {last}; it "
        "holds production until a learned candidate beats it."
    )
    with mlflow.start_run(run_name="naive bootstrap", nested=nested):
        mlflow.log_params({"kind": NAIVE, "half_width": bundle.half_width})
        return log_forecaster(conn, bundle, None, model_name, example, {"kind": NAIVE}, description)


# --- pinned files --------------------------------------------------------------------------

CODE_FILE = "mlflow_model_code.py"
MANIFEST_SKIP = {"registered_model_meta"}  # written by the download, not stored
EXAMPLE_FILES = ("input_example.json", "serving_input_example.json")  # in the model folder


class UntrustedModel(RegistryError):
    """A registered version's files differ from the digests recorded when it was registered."""


@dataclass(frozen=True)
class Digests:
    code: str  # the Python file loading executes
    weights: str | None  # the network's state dict (None: naive)
    bundle: str  # features, scalers, interval
    manifest: str  # every stored file (MLmodel names the loader and the code file)

    def tags(self) -> dict[str, str]:
        tags = {"code_sha256": self.code, "bundle_sha256": self.bundle}
        return tags | ({"weights_sha256": self.weights} if self.weights else {})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digests_of(model_dir: Path) -> Digests:
    """Digests of a downloaded model folder."""
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name not in MANIFEST_SKIP)
    manifest = hashlib.sha256()
    for path in files:
        manifest.update(f"{path.relative_to(model_dir).as_posix()}\0{_sha256(path)}\n".encode())
    weights = model_dir / "artifacts" / "weights.pt"
    code = model_dir / CODE_FILE
    if not code.is_file():
        raise UntrustedModel(f"{model_dir.name}: no {CODE_FILE} in the stored model")
    return Digests(
        code=_sha256(code),
        weights=_sha256(weights) if weights.is_file() else None,
        bundle=_sha256(model_dir / "artifacts" / "bundle.json"),
        manifest=manifest.hexdigest(),
    )


def _download(model_name: str, version: str, into: Path) -> Path:
    import mlflow

    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{model_name}/{version}", dst_path=str(into)
            )
        )
    except Exception as exc:
        raise RegistryError(
            f"cannot read models:/{model_name}/{version} (missing artifact?): {exc}"
        ) from exc


def _pin(conn: Any, model_name: str, version: str, sources: dict[str, Path]) -> Digests:
    """Record the digests of what the store now holds for `version`, after checking that it
    holds exactly the files just logged."""
    with tempfile.TemporaryDirectory() as tmp:
        stored = _download(model_name, version, Path(tmp))
        digests = digests_of(stored)
        for relative, source in sources.items():
            if _sha256(stored / relative) != _sha256(source):
                raise UntrustedModel(
                    f"{model_name} version {version}: the stored {relative} differs from the "
                    "file just logged (someone writes to the artifact store)"
                )
    record_digests(conn, model_name, version, digests)
    return digests


def record_digests(conn: Any, model_name: str, version: str, digests: Digests) -> None:
    with conn.cursor() as cur:
        ensure_table(cur, "model_digests", MODEL_DIGESTS_DDL)
        cur.execute(
            "INSERT INTO model_digests (model_name, version, code_sha256, weights_sha256, "
            "bundle_sha256, manifest_sha256) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (model_name, version) DO NOTHING",
            (model_name, version, digests.code, digests.weights, digests.bundle, digests.manifest),
        )
    conn.commit()


def recorded_digests(conn: Any, model_name: str, version: str) -> Digests | None:
    with conn.cursor() as cur:
        ensure_table(cur, "model_digests", MODEL_DIGESTS_DDL)
        cur.execute(
            "SELECT code_sha256, weights_sha256, bundle_sha256, manifest_sha256 "
            "FROM model_digests WHERE model_name = %s AND version = %s",
            (model_name, version),
        )
        row = cur.fetchone()
    conn.commit()
    return Digests(*row) if row else None


def pin_existing(conn: Any, model_name: str, version: str) -> Digests:
    """Trust a version registered before digests existed: record what the store holds now."""
    if recorded_digests(conn, model_name, version) is not None:
        raise RegistryError(f"{model_name} version {version} is pinned already")
    with tempfile.TemporaryDirectory() as tmp:
        digests = digests_of(_download(model_name, version, Path(tmp)))
    record_digests(conn, model_name, version, digests)
    return digests


def load_version(conn: Any, model_name: str, version: str):
    """`models:/<name>/<version>` as MLflow pyfunc and its Bundle, loaded from a local copy
    whose files match the digests recorded at registration; refused otherwise."""
    import mlflow

    expected = recorded_digests(conn, model_name, version)
    if expected is None:
        raise UntrustedModel(
            f"{model_name} version {version} has no recorded digests (registered before "
            f"pinning?): check it, then `stock-assets pin --version {version}`"
        )
    with tempfile.TemporaryDirectory() as tmp:
        local = _download(model_name, version, Path(tmp))
        found = digests_of(local)
        for part in ("code", "weights", "bundle", "manifest"):
            if getattr(found, part) != getattr(expected, part):
                what = {"code": CODE_FILE, "manifest": "file set (MLmodel, environment)"}
                raise UntrustedModel(
                    f"{model_name} version {version}: the stored {what.get(part, part)} does "
                    f"not match its digest recorded at registration (sha256 "
                    f"{getattr(found, part)} ≠ {getattr(expected, part)}): refusing to load it"
                )
        # serving never reads the input example (every trained ticker's window: 0.6 s of
        # JSON parsing a run at 500 tickers); verified above, so it may go from this copy
        for example in EXAMPLE_FILES:
            (local / example).unlink(missing_ok=True)
        try:
            # no requirement check (0.8 s a run): the files are the ones pinned at registration
            model = mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
        except Exception as exc:
            raise RegistryError(f"cannot load models:/{model_name}/{version}: {exc}") from exc
    return model, model.unwrap_python_model().bundle
