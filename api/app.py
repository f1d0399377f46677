"""The FastAPI application: routes, error bodies, the dashboard, and where its data lives.

`create_app()` with no argument reads the environment `stock-assets env` / `stock-assets api`
prepares; uvicorn can also start it as `api.app:create_app --factory`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from api import routes
from api.cache import CachedGets
from api.db import Database, DatabaseUnavailable, NotMaterialized
from api.registry import RegistryReader, RegistryUnavailable
from api.service import ApiConfig, Service

STATIC = Path(__file__).parent / "static"
# Swagger UI's and ReDoc's files from a pinned package: /docs renders with no network (FastAPI's
# default pages load them from a CDN and show a blank page offline)
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
log = logging.getLogger("stock_assets.api")


def config_from_environment() -> ApiConfig:
    """STOCK_ASSETS_API_DB_URL (e.g. a read-only role) wins over the platform's own URL."""
    from stock_assets.settings import load_settings

    settings = load_settings()
    url = settings.api.db_url or os.environ.get("STOCK_ASSETS_DB_URL")
    if not url:
        raise RuntimeError(
            "no database URL: set STOCK_ASSETS_API_DB_URL, or start through `stock-assets api` "
            "(which sets STOCK_ASSETS_DB_URL)"
        )
    return ApiConfig(
        db_url=url,
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None,
        model_name=settings.retraining.model_name,
        exchange=settings.market.exchange,
        rolling_window=settings.operations.rolling_window,
        alias_seconds=settings.api.alias_seconds,
    )


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def create_app(config: ApiConfig | None = None) -> FastAPI:
    config = config or config_from_environment()
    db = Database(config.db_url, max_size=config.pool_size)
    service = Service(
        config, db, RegistryReader(config.tracking_uri, alias_ttl=config.alias_seconds)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # MLflow's import and store set-up take a second: pay it now, not on the first request
        warm = asyncio.create_task(service.registry.warm_up())
        yield
        warm.cancel()
        await db.close()

    app = FastAPI(
        title="stock_assets",
        summary="Daily stock predictions, their lineage, model performance and promotions.",
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,  # served below from DOCS_ASSETS
        redoc_url=None,
    )
    app.state.service = service

    @app.exception_handler(DatabaseUnavailable)
    async def database_unavailable(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        log.warning("%s %s: %s", request.method, request.url.path, exc)  # the detail: the log
        return _problem(503, "database unavailable: try again shortly")

    @app.exception_handler(RegistryUnavailable)
    async def registry_unavailable(request: Request, exc: RegistryUnavailable) -> JSONResponse:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return _problem(503, "model registry unavailable: try again shortly")

    @app.exception_handler(NotMaterialized)
    async def not_materialized(request: Request, exc: NotMaterialized) -> JSONResponse:
        return _problem(503, f"no data yet: {exc}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable sentence per problem, naming the parameter.
        problems = [
            f"{'.'.join(str(p) for p in e['loc'] if p not in ('path', 'query'))}: {e['msg']}"
            for e in exc.errors()
        ]
        return _problem(422, "; ".join(problems))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this, so the server logs the traceback; the client gets no
        # internals.
        return _problem(500, "internal server error (logged by the server)")

    app.add_middleware(
        CachedGets,
        version=db.version,
        # /model/production also depends on the alias, which can move without a database write
        skip=(
            "/health",
            "/model/production",
            "/docs",
            "/openapi.json",
            "/static",
            "/redoc",
            "/docs-assets",
        ),
    )
    app.include_router(routes.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} API",
            redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app
