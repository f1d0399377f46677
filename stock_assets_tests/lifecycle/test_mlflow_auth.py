"""A real MLflow tracking server started by `stock-assets mlflow-server` (MLflow's basic-auth
app) on the embedded Postgres: who may read, register and move `production`."""

import os
import subprocess
import uuid

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from stock_assets.runtime.mlflow_auth import AuthSetup, ensure_users, write_auth_config
from stock_assets.runtime.postgres import ensure_databases
from stock_assets_tests import servers

USERS = {
    "MLFLOW_AUTH_ADMIN_PASSWORD": "adm'in\\Pass-1234",
    "MLFLOW_PLATFORM_USERNAME": "platform",
    "MLFLOW_PLATFORM_PASSWORD": "plat'form\\Pass-1234",
    "MLFLOW_API_USERNAME": "api",
    "MLFLOW_API_PASSWORD": "a'pi\\Pass-1234",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-csrf-key",
}
MODEL = f"auth_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def tracking(pg_server, tmp_path_factory):
    ensure_databases(pg_server, ("mlflow_authtest", "mlflow_authtest_users"))
    folder = tmp_path_factory.mktemp("mlflow-auth")
    port = servers.free_port()
    env = {
        **USERS,
        "MLFLOW_AUTH_DATABASE_URI": pg_server.for_db("mlflow_authtest_users", driver="psycopg2"),
        "MLFLOW_BACKEND_STORE_URI": pg_server.for_db("mlflow_authtest", driver="psycopg2"),
        "STOCK_ASSETS_MODEL_NAME": MODEL,
    }
    args = ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--serve-artifacts"]
    args += ["--artifacts-destination", str(folder / "artifacts")]
    server = servers.start(
        [str(servers.BIN / "stock-assets"), "mlflow-server", *args],
        port,
        folder / "server.log",
        env,
        ready_path="/health",
        timeout=120,
    )
    try:
        yield server.base_url, env
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _mlflow_uris_restored():
    """These tests point the mlflow module at their own server: later tests must not inherit it."""
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)


def _as(monkeypatch, url: str, user: str | None) -> MlflowClient:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    if user:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USERS[f"MLFLOW_{user}_USERNAME"])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", USERS[f"MLFLOW_{user}_PASSWORD"])
    return MlflowClient(tracking_uri=url, registry_uri=url)


def _register(client: MlflowClient, url: str) -> list[str]:
    """Two versions of MODEL, each from a run with an uploaded artifact."""
    mlflow.set_tracking_uri(url)
    experiment = client.create_experiment(f"auth-{uuid.uuid4().hex[:6]}")
    client.create_registered_model(MODEL)
    versions = []
    for _ in range(2):
        run = client.create_run(experiment)
        client.log_text(run.info.run_id, "weights", "model/MLmodel")
        source = f"{run.info.artifact_uri}/model"
        versions.append(client.create_model_version(MODEL, source, run.info.run_id).version)
    return versions


def test_anonymous_requests_are_refused(tracking):
    url, _ = tracking
    for path in (
        "/api/2.0/mlflow/experiments/search?max_results=1",
        "/api/2.0/mlflow/registered-models/search",
    ):
        answer = httpx.get(url + path)
        assert answer.status_code == 401, (path, answer.status_code)
    wrong = httpx.get(url + "/api/2.0/mlflow/registered-models/search", auth=("api", "wrong"))
    assert wrong.status_code == 401


def test_platform_registers_and_moves_the_alias_and_the_api_only_reads(tracking, monkeypatch):
    url, _ = tracking
    platform = _as(monkeypatch, url, "PLATFORM")
    v1, v2 = _register(platform, url)
    platform.set_registered_model_alias(MODEL, "production", v1)
    api = _as(monkeypatch, url, "API")
    assert api.get_model_version_by_alias(MODEL, "production").version == v1  # reads
    with pytest.raises(MlflowException, match=r"PERMISSION_DENIED|Permission denied"):
        api.set_registered_model_alias(MODEL, "production", v2)
    with pytest.raises(MlflowException, match=r"PERMISSION_DENIED|Permission denied"):
        api.delete_registered_model(MODEL)
    assert platform.get_model_version_by_alias(MODEL, "production").version == v1


def test_the_platform_commands_work_with_credentials_from_the_environment(tracking, monkeypatch):
    url, _ = tracking
    platform = _as(monkeypatch, url, "PLATFORM")
    if not platform.search_model_versions(f"name = '{MODEL}'"):
        _register(platform, url)
        platform.set_registered_model_alias(MODEL, "production", "1")
    base = {**os.environ, "MLFLOW_TRACKING_URI": url, "STOCK_ASSETS_MODEL_NAME": MODEL}
    cli = str(servers.BIN / "stock-assets")

    def run(user: str, *args: str) -> subprocess.CompletedProcess:
        env = {
            **base,
            "MLFLOW_TRACKING_USERNAME": USERS[f"MLFLOW_{user}_USERNAME"],
            "MLFLOW_TRACKING_PASSWORD": USERS[f"MLFLOW_{user}_PASSWORD"],
        }
        return subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=300)

    current = platform.get_model_version_by_alias(MODEL, "production").version
    other = "2" if current == "1" else "1"
    refused = run("API", "promote", "--version", other)
    assert refused.returncode == 1 and "403" in refused.stderr, refused.stderr
    assert "Permission denied" in refused.stderr
    assert "Traceback" not in refused.stderr
    moved = run("PLATFORM", "promote", "--version", other)
    assert moved.returncode == 0, moved.stderr[-2000:]
    assert f"version {current} -> {other}" in moved.stdout
    back = run("PLATFORM", "rollback")
    assert back.returncode == 0 and f"version {other} -> {current}" in back.stdout, back.stderr


def test_users_are_made_once_and_a_changed_password_is_reset(tracking, tmp_path):
    _, env = tracking
    setup = AuthSetup.from_env(env)
    assert ensure_users(setup) == []  # the users and the grant exist: nothing to do
    changed = AuthSetup.from_env({**env, "MLFLOW_API_PASSWORD": "rotated-Pass-1234"})
    assert "user api: password reset to the configured one" in ensure_users(changed)
    ensure_users(setup)  # back, for the other tests
    config = write_auth_config(setup, tmp_path)
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert "default_permission = READ" in config.read_text()


def test_missing_secrets_are_named():
    with pytest.raises(ValueError, match="MLFLOW_PLATFORM_PASSWORD, MLFLOW_API_USERNAME"):
        AuthSetup.from_env(
            {
                "MLFLOW_AUTH_DATABASE_URI": "sqlite://",
                "MLFLOW_AUTH_ADMIN_PASSWORD": "x",
                "MLFLOW_PLATFORM_USERNAME": "p",
                "MLFLOW_API_PASSWORD": "y",
                "MLFLOW_FLASK_SERVER_SECRET_KEY": "z",
            }
        )
