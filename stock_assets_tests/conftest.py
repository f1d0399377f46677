"""One embedded Postgres for the whole test session, in a temporary state folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")
for _var in ("STOCK_ASSETS_POSTGRES_URL", "STOCK_ASSETS_TICKERS", "STOCK_ASSETS_START_DATE"):
    os.environ.pop(_var, None)
os.environ["STOCK_ASSETS_SOURCE"] = "sample"
os.environ["STOCK_ASSETS_INGEST_RETRIES"] = "0"  # a failing test must fail now, not retry


@pytest.fixture(scope="session")
def state_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("state")
    os.environ["STOCK_ASSETS_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def pg_server(state_home: Path) -> Iterator:
    from stock_assets.runtime.postgres import embedded_stop, ready_server
    from stock_assets.settings import load_settings

    settings = load_settings()
    server = ready_server(settings)
    yield server
    embedded_stop(settings.pgdata)


@pytest.fixture
def stocks_url(pg_server) -> str:
    """The `stocks` database, emptied of tables before each test."""
    url = pg_server.for_db("stocks")
    drop_public_tables(url)
    return url


def drop_public_tables(url: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (name,) in cur.fetchall():
            cur.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')
    conn.close()


@pytest.fixture
def conn(stocks_url: str) -> Iterator:
    connection = psycopg2.connect(stocks_url)
    yield connection
    connection.close()


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        connection.close()
