"""Thin Dagster resources: which database, which market and price source, and the settings of
each concern as UI-visible config. Defaults live only in `stock_assets/settings.py`: every
resource here is built from a settings section (`of`) and turns back into one (`settings`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from dagster import Config, ConfigurableResource, EnvVar

from stock_assets.market.sources import (
    CsvSource,
    Dividend,
    PriceSource,
    Regime,
    SampleSource,
    Split,
    SyntheticSource,
    YahooSource,
)
from stock_assets.runtime.postgres import ServerUrl, connect, ready_server
from stock_assets.settings import (
    AlertSettings,
    OperationsSettings,
    PolicySettings,
    RetrainingSettings,
    Settings,
    load_settings,
)
from stock_assets.storage.writer import Timeouts


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

    def timeouts(self) -> Timeouts:
        """How long this platform's writers wait for a lock and for one statement."""
        settings = self.settings()
        return Timeouts(settings.lock_timeout_seconds, settings.statement_timeout_seconds)

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
    exchange: str
    chart_max_partitions: int
    settle_minutes: int

    def ticker_list(self) -> list[str]:
        return list(dict.fromkeys(self.tickers))


class SectionResource(ConfigurableResource):
    """A settings section as resource config: the same fields, no defaults of its own."""

    section: ClassVar[type]

    @classmethod
    def of(cls, settings: Any) -> Any:
        values = dataclasses.asdict(settings)
        return cls(**{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()})

    def settings(self) -> Any:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self.section)}
        return self.section(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        ).validate()


class RetrainingConfig(SectionResource):
    """Budgets and rules of a retraining (`RetrainingSettings`)."""

    section: ClassVar[type] = RetrainingSettings
    model_name: str
    n_trials: int
    timeout_seconds: float | None
    max_epochs: int
    correlation_threshold: float | None
    promotion_margin: float
    promotion_dm_pvalue: float | None
    min_common_window: int
    validation: float
    calibration: float
    test: float
    gap: int
    patience: int
    seed: int
    seq_lens: list[int]
    hidden_sizes: list[int]
    layer_counts: list[int]
    batch_sizes: list[int]
    architectures: list[str]


class OperationsConfig(SectionResource):
    """Daily operations: scoring window, JSON files, late-data retries (`OperationsSettings`)."""

    section: ClassVar[type] = OperationsSettings
    rolling_window: int
    export_dir: str | None  # None: $STOCK_ASSETS_HOME/predictions
    ingest_retries: int
    ingest_retry_seconds: int
    overlap_sessions: int
    max_missing_share: float
    aci_gamma: float


class PolicyConfig(SectionResource):
    """The retraining sensor's thresholds (`PolicySettings`)."""

    section: ClassVar[type] = PolicySettings
    skill_floor: float
    skill_sessions: int
    mape_ceiling: float
    coverage_significance: float
    min_scored: int
    stale_sessions: int
    cooldown_sessions: int
    first_model_sessions: int
    demotion_sessions: int
    demotion_significance: float


class ModelRegistryResource(ConfigurableResource):
    """Read access to the registry for serving: no MLflow run is opened."""

    model_name: str

    def setup(self) -> None:
        from stock_assets.lifecycle.registry import setup

        setup()


# Price sources: one resource per source, so the UI shows which one a run read and how.


class PriceSourceResource(ConfigurableResource):
    """Base of the price-source resources: `source()` is the market layer's reader."""

    def source(self) -> PriceSource:
        raise NotImplementedError

    @staticmethod
    def of(source: PriceSource) -> PriceSourceResource:
        """The resource that rebuilds `source` (tests and benchmarks hand over plain sources)."""
        if isinstance(source, SampleSource):
            return SampleSourceResource()
        if isinstance(source, SyntheticSource):
            return SyntheticSourceResource.of_source(source)
        if isinstance(source, CsvSource):
            return CsvSourceResource(folder=str(source.folder))
        if isinstance(source, YahooSource):
            return YahooSourceResource(
                retries=source.retries,
                backoff=source.backoff,
                cache_dir=str(source.cache_dir) if source.cache_dir else None,
            )
        raise TypeError(f"no resource for price source {type(source).__name__}")


class SampleSourceResource(PriceSourceResource):
    """Real S&P 500 and NASDAQ Composite closes shipped in the `arch` package: offline."""

    def source(self) -> PriceSource:
        return SampleSource()


class RegimeConfig(Config):
    start: str
    drift: float
    volatility: float


class SplitEventConfig(Config):
    ticker: str
    day: str
    ratio: float


class DividendEventConfig(Config):
    ticker: str
    day: str
    amount: float


class SyntheticSourceResource(PriceSourceResource):
    """A seeded synthetic market with regime changes, splits and dividends."""

    seed: int
    n_tickers: int
    start: str
    end: str
    exchange: str
    tickers: list[str]
    regimes: list[RegimeConfig]
    splits: list[SplitEventConfig]
    dividends: list[DividendEventConfig]

    @classmethod
    def of_source(cls, s: SyntheticSource) -> SyntheticSourceResource:
        return cls(
            seed=s.seed,
            n_tickers=s.n_tickers,
            start=str(s.start),
            end=str(s.end),
            exchange=s.exchange,
            tickers=list(s.tickers),
            regimes=[
                RegimeConfig(start=str(r.start), drift=r.drift, volatility=r.volatility)
                for r in s.regimes
            ],
            splits=[
                SplitEventConfig(ticker=x.ticker, day=str(x.day), ratio=x.ratio) for x in s.splits
            ],
            dividends=[
                DividendEventConfig(ticker=x.ticker, day=str(x.day), amount=x.amount)
                for x in s.dividends
            ],
        )

    def source(self) -> PriceSource:
        day = dt.date.fromisoformat
        return SyntheticSource(
            seed=self.seed,
            n_tickers=self.n_tickers,
            start=day(self.start),
            end=day(self.end),
            exchange=self.exchange,
            tickers=tuple(self.tickers),
            regimes=tuple(Regime(day(r.start), r.drift, r.volatility) for r in self.regimes),
            splits=tuple(Split(x.ticker, day(x.day), x.ratio) for x in self.splits),
            dividends=tuple(Dividend(x.ticker, day(x.day), x.amount) for x in self.dividends),
        )


class CsvSourceResource(PriceSourceResource):
    """A folder of <TICKER>.csv files."""

    folder: str | None

    def source(self) -> PriceSource:
        return CsvSource(Path(self.folder) if self.folder else None)


class YahooSourceResource(PriceSourceResource):
    """Yahoo Finance through yfinance; needs a network."""

    retries: int
    backoff: float
    cache_dir: str | None

    def source(self) -> PriceSource:
        cache = Path(self.cache_dir) if self.cache_dir else None
        return YahooSource(retries=self.retries, backoff=self.backoff, cache_dir=cache)


class AlertChannels(ConfigurableResource):
    """Where failure alerts go (`AlertSettings`). The SMTP password is an `EnvVar`: the UI shows
    the variable's name, never its value."""

    smtp_host: str | None
    smtp_port: int
    smtp_starttls: bool
    smtp_user: str | None
    smtp_password: str | None
    email_from: str
    email_to: list[str]
    webhook_url: str | None
    timeout: float
    retry_max_seconds: float
    give_up_hours: float
    first_tick_hours: float

    @classmethod
    def of(cls, settings: AlertSettings) -> AlertChannels:
        values = dataclasses.asdict(settings)
        values["email_to"] = list(settings.email_to)
        if settings.smtp_password is not None:
            values["smtp_password"] = EnvVar(PASSWORD_VARIABLE)
        return cls(**values)

    def settings(self) -> AlertSettings:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(AlertSettings)}
        return AlertSettings(**{**values, "email_to": tuple(self.email_to)}).validate()


PASSWORD_VARIABLE = next(
    f.metadata["env"] for f in dataclasses.fields(AlertSettings) if f.name == "smtp_password"
)
