"""What each endpoint answers, built from the database and the registry; no HTTP here but the
errors a caller can act on (404 for unknown things, 422 past a cap)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel, TypeAdapter

from api import schemas
from api.cache import VersionedCache
from api.db import Database
from api.registry import RegistryReader, RegistryUnavailable
from stock_assets.market.calendars import last_closed_session
from stock_assets.ml.conformal import coverage_band
from stock_assets.settings import (
    ApiSettings,
    MarketSettings,
    OperationsSettings,
    RetrainingSettings,
)

DEFAULT_HISTORY_DAYS = 365
PREDICTIONS = TypeAdapter(list[schemas.Prediction])


@dataclass(frozen=True)
class ApiConfig:
    db_url: str
    tracking_uri: str | None
    model_name: str = RetrainingSettings.model_name
    exchange: str = MarketSettings.exchange
    rolling_window: int = OperationsSettings.rolling_window
    pool_size: int = 8
    alias_seconds: float = ApiSettings.alias_seconds


def not_found(detail: str) -> HTTPException:
    return HTTPException(status_code=404, detail=detail)


def served_range(
    start: dt.date | None, end: dt.date | None, newest: dt.date | None
) -> tuple[dt.date, dt.date, dt.date | None]:
    """The range a request is served, and where the next one starts when the cap cut it.

    Every request the OpenAPI schema allows succeeds: a range longer than MAX_RANGE_DAYS is
    served from `start` for MAX_RANGE_DAYS days with `next_start` saying where to go on (as a
    page does), and `start` after `end` is an empty range, not an error. Without `end` the range
    runs to the ticker's newest row; without `start` it is the year before `end`."""
    last = end or newest or dt.date.today()
    first = start or _days_before(last, DEFAULT_HISTORY_DAYS)
    if (last - first).days > schemas.MAX_RANGE_DAYS:  # so `first` is far from date.max
        capped = first + dt.timedelta(days=schemas.MAX_RANGE_DAYS)
        return first, capped, capped + dt.timedelta(days=1)
    return first, last, None


def _days_before(day: dt.date, days: int) -> dt.date:
    return dt.date.min if day.toordinal() <= days else day - dt.timedelta(days=days)


def _skill(mae: float | None, naive: float | None) -> float | None:
    if mae is None or not naive:
        return None
    return 1.0 - mae / naive


def _scores(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {
            "predictions": 0,
            "first_session": None,
            "last_session": None,
            "mae": None,
            "mape_pct": None,
            "naive_mae": None,
            "skill": None,
            "direction_accuracy": None,
            "coverage_80": None,
            "coverage_80_band": None,
            "interval_score_pct": None,
            "naive_coverage_80": None,
            "naive_interval_score_pct": None,
            "always_up_direction_accuracy": None,
        }
    out = {k: row[k] for k in row if k != "ticker"}
    out["skill"] = _skill(row["mae"], row["naive_mae"])
    out["coverage_80_band"] = list(coverage_band(int(row["predictions"])))
    return out


class Service:
    def __init__(self, config: ApiConfig, db: Database, registry: RegistryReader) -> None:
        self.config = config
        self.db = db
        self.registry = registry
        self.cache = VersionedCache()

    async def cached(self, key: Hashable, build: Callable[[], Awaitable[BaseModel]]) -> bytes:
        """The serialized answer for `key`, rebuilt only after the database was written."""
        version = await self.db.version()

        async def compute() -> bytes:
            return (await build()).model_dump_json().encode()

        return await self.cache.get(key, version, compute)

    # --- helpers -------------------------------------------------------------------------------

    async def _known_ticker(self, ticker: str) -> None:
        # a lookup, not the ticker list: that aggregates every stored price (78 ms at 500
        # tickers × a year) and every write invalidates it
        if not await self.db.has_prices(ticker):
            raise not_found(f"unknown ticker {ticker!r}: it has no stored prices")

    async def _with_kinds(self, rows: list[dict[str, Any]]) -> list[schemas.Prediction]:
        kinds = await self.registry.kinds({(r["model_name"], r["model_version"]) for r in rows})
        for r in rows:
            r["model_kind"] = kinds.get((r["model_name"], r["model_version"]))
        # one validation pass in pydantic-core, not one Python __init__ per row (5,000 rows:
        # 62 → 42 ms)
        return PREDICTIONS.validate_python(rows)

    # --- endpoints -----------------------------------------------------------------------------

    async def health(self, now: dt.datetime) -> schemas.Health:
        await self.db.write_counters()  # a real round trip: DatabaseUnavailable → 503
        newest = await self.db.newest_partitions()
        try:
            production = await self.registry.production(
                self.config.model_name, await self.db.version()
            )
        except RegistryUnavailable:
            production = None
        last = last_closed_session(now, self.config.exchange)
        stale = newest["as_of"] is None or (last is not None and newest["as_of"] < last)
        missing = await self.db.missing_tickers(newest["raw"])
        return schemas.Health(
            status="stale" if stale else "ok",
            database=True,
            newest_raw_partition=newest["raw"],
            newest_prediction_partition=newest["as_of"],
            newest_target_date=newest["target"],
            last_session=last,
            stale=stale,
            production_version=production.version if production else None,
            model_name=self.config.model_name,
            missing_tickers=[schemas.MissingTicker(**m) for m in missing],
        )

    async def _tickers(self) -> schemas.TickerList:
        return schemas.TickerList(
            tickers=[schemas.TickerInfo(**r) for r in await self.db.tickers()]
        )

    async def tickers(self) -> bytes:
        return await self.cached(("tickers",), self._tickers)

    async def latest(self, ticker: str | None) -> bytes:
        async def build() -> BaseModel:
            if ticker is not None:
                await self._known_ticker(ticker)
            rows = await self.db.latest_predictions(ticker)
            if ticker is not None and not rows:
                raise not_found(f"ticker {ticker!r} has no predictions yet")
            predictions = await self._with_kinds(rows)
            if ticker is not None:
                return predictions[0]
            return schemas.PredictionList(count=len(predictions), predictions=predictions)

        return await self.cached(("latest", ticker), build)

    async def for_target(self, target: dt.date) -> bytes:
        async def build() -> BaseModel:
            rows = await self.db.predictions_for_target(target)
            if not rows:
                raise not_found(
                    f"no predictions target {target}: not a session, or not predicted yet"
                )
            predictions = await self._with_kinds(rows)
            return schemas.PredictionList(count=len(predictions), predictions=predictions)

        return await self.cached(("target", target), build)

    async def history(
        self,
        ticker: str,
        start: dt.date | None,
        end: dt.date | None,
        page: int,
        page_size: int,
    ) -> bytes:

        async def build() -> BaseModel:
            await self._known_ticker(ticker)
            newest = None if end else await self.db.newest_as_of(ticker)
            first, last, next_start = served_range(start, end, newest)
            total, rows = await self.db.prediction_history(
                ticker, first, last, (page - 1) * page_size, page_size
            )
            return schemas.PredictionPage(
                ticker=ticker,
                start=first,
                end=last,
                page=page,
                page_size=page_size,
                total=total,
                next_start=next_start,
                predictions=await self._with_kinds(rows),
            )

        return await self.cached(("history", ticker, start, end, page, page_size), build)

    async def prices(
        self, ticker: str, start: dt.date | None, end: dt.date | None, adjusted: bool = False
    ) -> bytes:

        async def build() -> BaseModel:
            await self._known_ticker(ticker)
            newest = None if end else (await self.db.raw_span(ticker, dt.date.max))["last"]
            first, last, next_start = served_range(start, end, newest)
            rows = await self.db.prices(ticker, first, last, adjusted)
            return schemas.PriceHistory(
                ticker=ticker,
                start=first,
                end=last,
                basis="adjusted" if adjusted else "as traded",
                next_start=next_start,
                prices=[schemas.PriceBar(**r) for r in rows],
            )

        return await self.cached(("prices", ticker, start, end, adjusted), build)

    async def performance(self, window: int | None, ticker: str | None) -> bytes:
        window = window or self.config.rolling_window

        async def build() -> BaseModel:
            if ticker is not None:
                await self._known_ticker(ticker)
            rows = await self.db.performance(window, ticker)
            overall = next((r for r in rows if r["ticker"] is None), None)
            return schemas.Performance(
                window_sessions=window,
                overall=schemas.Scores(**_scores(overall)),
                tickers=[
                    schemas.TickerScores(ticker=r["ticker"], **_scores(r))
                    for r in rows
                    if r["ticker"] is not None
                ],
            )

        return await self.cached(("performance", window, ticker), build)

    async def production(self) -> bytes:
        name = self.config.model_name
        # the alias can move outside this platform (the MLflow UI): it is re-read at most every
        # alias_ttl seconds and is part of the key, not just the database's version
        info = await self.registry.production(name, await self.db.version())

        async def build() -> BaseModel:
            if info is None:
                raise not_found(f"no version of model {name!r} holds the alias 'production'")
            promotion = await self.db.promotion_of(name, info.version) or {}
            metrics = promotion.get("candidate_metrics") or promotion.get("metrics") or None
            return schemas.ProductionModel(
                model_name=name,
                version=info.version,
                kind=info.kind or "unknown",
                mlflow_run_id=info.run_id,
                dataset_run_id=info.dataset_run_id,
                cutoff=dt.date.fromisoformat(info.cutoff) if info.cutoff else None,
                promoted_at=promotion.get("promoted_at"),
                promotion_reason=promotion.get("reason"),
                metrics=metrics,
            )

        return await self.cached(("production", info), build)

    async def promotions(self) -> bytes:
        async def build() -> BaseModel:
            rows = await self.db.promotions(self.config.model_name)
            return schemas.PromotionList(promotions=[schemas.Promotion(**r) for r in rows])

        return await self.cached(("promotions",), build)

    async def lineage(self, ticker: str, as_of: dt.date) -> bytes:
        async def build() -> BaseModel:
            await self._known_ticker(ticker)
            row = await self.db.prediction(ticker, as_of)
            if row is None:
                raise not_found(f"no prediction for {ticker!r} as of {as_of}")
            (prediction,) = await self._with_kinds([row])
            version = await self.registry.version(row["model_name"], row["model_version"])
            run_id = row["mlflow_run_id"] or (version.run_id if version else None)
            run = await self.registry.run(run_id) if run_id else None
            dataset = (
                await self.db.dataset_run(row["dataset_run_id"]) if row["dataset_run_id"] else None
            )
            cutoff = dataset["cutoff"] if dataset else None
            if cutoff is None and version is not None and version.cutoff:
                cutoff = dt.date.fromisoformat(version.cutoff)
            return schemas.Lineage(
                prediction=prediction,
                model_name=row["model_name"],
                model_version=row["model_version"],
                model_kind=prediction.model_kind,
                mlflow_run=schemas.MlflowRun(**run) if run else None,
                dataset_run=schemas.DatasetRun(**dataset) if dataset else None,
                cutoff=cutoff,
                raw_prices=schemas.RawPartitions(**await self.db.raw_span(ticker, as_of)),
            )

        return await self.cached(("lineage", ticker, as_of), build)
