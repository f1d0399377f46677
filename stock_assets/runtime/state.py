"""The state folder and the environment the `dagster` and `psql` tools need to use it."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from stock_assets.runtime.postgres import ServerUrl, ready_server
from stock_assets.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGSTER_YAML_TEMPLATE = REPO_ROOT / "dagster.yaml"


def write_dagster_home(settings: Settings) -> Path:
    """Copy the repository's instance template into DAGSTER_HOME (Dagster reads only that one)."""
    if not DAGSTER_YAML_TEMPLATE.exists():
        raise FileNotFoundError(f"instance template missing: {DAGSTER_YAML_TEMPLATE}")
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    text = DAGSTER_YAML_TEMPLATE.read_text()
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    return target


# Dagster stores each event with its own connection; a backfill of 5,000 daily partitions
# writes two events per partition and asset. Batching the materialization events (an opt-in
# Dagster switch, also set in the Dockerfile) halves a 500-partition ingest (43 s -> 20 s).
EVENT_LOG_ENV = {"DAGSTER_EVENT_BATCH_SIZE": "1000"}


def tool_environment(settings: Settings, server: ServerUrl) -> dict[str, str]:
    """Variables for the plain tools. STOCK_ASSETS_DB_URL is an output: never read back."""
    return {
        "STOCK_ASSETS_HOME": str(settings.home),
        "DAGSTER_HOME": str(settings.dagster_home),
        # No DAGSTER_MODULE_NAME: `dg` finds the code location from pyproject.toml, and with that
        # variable exported the webserver of `dg dev` / `dagster dev` refuses its workspace and
        # hangs without a word. The plain `dagster` CLI takes `-m stock_assets.definitions`.
        "STOCK_ASSETS_DAGSTER_PG_URL": server.for_db("dagster", driver="psycopg2"),
        "STOCK_ASSETS_DB_URL": server.for_db("stocks"),
        "MLFLOW_TRACKING_URI": _tracking_uri(server),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **EVENT_LOG_ENV,
        **_activation(),
    }


def _tracking_uri(server: ServerUrl) -> str:
    """A tracking server the user set (http[s]://, e.g. an authenticated one) is kept; a store
    URL is this function's own output for some state folder, so it is made again."""
    chosen = os.environ.get("MLFLOW_TRACKING_URI", "")
    if chosen.startswith(("http://", "https://")):
        return chosen
    return server.for_db("mlflow", driver="psycopg2")


def _activation() -> dict[str, str]:
    """The virtual environment this command runs from, as `activate` would set it: `dg` runs
    the project's tools from it and warns when no environment (or another one) is active."""
    out = (
        {"XDG_RUNTIME_DIR": os.environ["XDG_RUNTIME_DIR"]}
        if "XDG_RUNTIME_DIR" in os.environ
        else {}
    )
    if sys.prefix == sys.base_prefix:
        return out
    bindir = str(Path(sys.prefix) / "bin")
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        out["PATH"] = bindir + os.pathsep + path
    return {**out, "VIRTUAL_ENV": sys.prefix}


def prepare(settings: Settings) -> dict[str, str]:
    """Start what is needed, write the instance file, and set the tool variables in this process."""
    settings.home.mkdir(parents=True, exist_ok=True)
    server = ready_server(settings)
    write_dagster_home(settings)
    env = tool_environment(settings, server)
    os.environ.update(env)
    return env


def export_lines(env: dict[str, str]) -> str:
    return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in env.items())
