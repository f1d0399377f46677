"""Thin resources: which database to talk to, and which price source to read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource

from stock_assets.runtime.postgres import ServerUrl, connect, ready_server
from stock_assets.settings import Settings, load_settings


@lru_cache(maxsize=8)
def _ready(settings: Settings) -> ServerUrl:
    # Once per process and server: the status check, start and CREATE DATABASE are not free.
    return ready_server(settings)


class PostgresResource(ConfigurableResource):
    """One database of the platform's server. Unset fields come from the environment."""

    database: str = "stocks"
    postgres_url: str | None = None
    home: str | None = None

    def settings(self) -> Settings:
        settings = load_settings()
        if self.home:
            settings = replace(settings, home=Path(self.home).resolve())
        if self.postgres_url:
            settings = replace(settings, postgres_url=self.postgres_url)
        return settings

    def url(self) -> str:
        return _ready(self.settings()).for_db(self.database)

    def url_for_driver(self, driver: str) -> str:
        """SQLAlchemy URL (e.g. `postgresql+psycopg2://…`) for Optuna and MLflow."""
        return _ready(self.settings()).for_db(self.database, driver=driver)

    @contextmanager
    def connect(self) -> Iterator[Any]:
        conn = connect(self.url())
        try:
            yield conn
        finally:
            conn.close()


class MarketResource(ConfigurableResource):
    """Which tickers on which exchange; chart only runs of at most `chart_max_partitions`."""

    tickers: list[str]
    exchange: str = "XNYS"
    chart_max_partitions: int = 5

    def ticker_list(self) -> list[str]:
        return list(dict.fromkeys(self.tickers))
