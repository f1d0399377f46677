"""The MLflow tracking server behind MLflow's basic-auth app, with the platform's two users.

Without authentication anyone who reaches the tracking server can register a version and move
`production`, and a registered model is code the next run loads. So the server runs MLflow's
`basic-auth` app: every request needs a user; a new user may read (`default_permission =
READ`); the platform's user gets MANAGE on the model and the experiment it writes (granted here
by name, so it also holds for a model registered before authentication was turned on); the
API's user only reads. The admin (MLflow's bootstrap user) is for people, not for services.

`stock-assets mlflow-server` writes the auth config from the environment into a private file,
makes sure the users exist with the configured passwords, then becomes `mlflow server`.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

EXPERIMENT = "stock_assets"


@dataclass(frozen=True)
class AuthSetup:
    """What the server needs, all from the environment (docker-compose passes secrets)."""

    database_uri: str  # MLflow's user store (its own database)
    admin_username: str
    users: Mapping[str, str]  # service user -> password
    platform_user: str
    model_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthSetup:
        env = os.environ if env is None else env
        required = (
            "MLFLOW_AUTH_DATABASE_URI",
            "MLFLOW_AUTH_ADMIN_PASSWORD",
            "MLFLOW_PLATFORM_USERNAME",
            "MLFLOW_PLATFORM_PASSWORD",
            "MLFLOW_API_USERNAME",
            "MLFLOW_API_PASSWORD",
            "MLFLOW_FLASK_SERVER_SECRET_KEY",  # CSRF key of the auth app, same on every worker
        )
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise ValueError(f"mlflow-server needs {', '.join(missing)} (see .env.example)")
        platform, api = env["MLFLOW_PLATFORM_USERNAME"], env["MLFLOW_API_USERNAME"]
        admin = env.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin"
        if len({platform, api, admin}) < 3:
            raise ValueError("the admin, platform and API MLflow users must be three users")
        return cls(
            database_uri=env["MLFLOW_AUTH_DATABASE_URI"],
            admin_username=admin,
            users={platform: env["MLFLOW_PLATFORM_PASSWORD"], api: env["MLFLOW_API_PASSWORD"]},
            platform_user=platform,
            model_name=env.get("STOCK_ASSETS_MODEL_NAME") or "stock_assets",
        )


def write_auth_config(setup: AuthSetup, folder: Path | None = None) -> Path:
    """MLflow's basic_auth.ini for `setup`, readable by this user only (it holds a DB URL)."""
    fd, name = tempfile.mkstemp(prefix="mlflow-auth-", suffix=".ini", dir=folder)
    os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
    escape = str.maketrans({"%": "%%"})  # configparser's interpolation reads '%'
    with os.fdopen(fd, "w") as out:
        out.write(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {setup.database_uri.translate(escape)}\n"
            f"admin_username = {setup.admin_username.translate(escape)}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "grant_default_workspace_access = false\n"
        )
    return Path(name)


def ensure_users(setup: AuthSetup, tracking_store_uri: str | None = None) -> list[str]:
    """Create the service users (or reset their passwords to the configured ones) and give the
    platform's user MANAGE on its model and experiment. Returns what changed."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.permissions import MANAGE
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(setup.database_uri)
    changed = []
    for user, password in setup.users.items():
        if store.has_user(user):
            if not store.authenticate_user(user, password):
                store.update_user(user, password=password)
                changed.append(f"user {user}: password reset to the configured one")
        else:
            store.create_user(user, password, is_admin=False)
            changed.append(f"user {user}: created")
    grants = [("model", setup.model_name)]
    experiment = _experiment_id(tracking_store_uri) if tracking_store_uri else None
    if experiment is not None:
        grants.append(("experiment", experiment))
    for kind, resource in grants:
        try:
            if kind == "model":
                store.create_registered_model_permission(resource, setup.platform_user, MANAGE.name)
            else:
                store.create_experiment_permission(resource, setup.platform_user, MANAGE.name)
            changed.append(f"{setup.platform_user}: MANAGE on {kind} {resource}")
        except MlflowException:  # already granted: make sure it is MANAGE
            if kind == "model":
                store.update_registered_model_permission(resource, setup.platform_user, MANAGE.name)
            else:
                store.update_experiment_permission(resource, setup.platform_user, MANAGE.name)
    return changed


def _experiment_id(tracking_store_uri: str) -> str | None:
    """The platform's experiment in the tracking store, when it exists already."""
    from mlflow.tracking import MlflowClient

    experiment = MlflowClient(tracking_uri=tracking_store_uri).get_experiment_by_name(EXPERIMENT)
    return experiment.experiment_id if experiment else None


def server_command(config: Path, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """`mlflow server` with the basic-auth app, and the environment it runs with."""
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(config)}
    return [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", *args], env
