"""HTTP routes: parameters, their limits and documented answers; the work is in `Service`.

Handlers return the cached JSON bytes as they are; `response_model` documents the body.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from api import schemas
from api.service import Service

Ticker = Annotated[
    str,
    Path(
        pattern=schemas.TICKER_PATTERN,
        description="Ticker symbol as stored (case-insensitive), e.g. AAPL",
        examples=["AAPL"],
    ),
]
Start = Annotated[schemas.IsoDate | None, Query(description="First date, inclusive")]
End = Annotated[schemas.IsoDate | None, Query(description="Last date, inclusive")]

# Declaring 422 here also replaces FastAPI's default (list-shaped) validation body in the docs.
_PROBLEMS = {
    422: {"model": schemas.Problem, "description": "Malformed parameter or cap exceeded"},
    503: {"model": schemas.Problem, "description": "Database or registry unavailable"},
    500: {"model": schemas.Problem, "description": "Unexpected error (logged by the server)"},
}
_404 = {404: {"model": schemas.Problem, "description": "Unknown ticker, date or model"}}

router = APIRouter(responses=_PROBLEMS)


def _json(body: bytes, status_code: int = 200) -> Response:
    return Response(content=body, status_code=status_code, media_type="application/json")


def _service(request: Request) -> Service:
    return request.app.state.service


@router.get("/health", response_model=schemas.Health, tags=["service"])
async def health(request: Request) -> Response:
    """Database reachable, newest partitions, production version, and whether predictions lag
    the last closed session. 503 when the database cannot be reached."""
    result = await _service(request).health(dt.datetime.now(dt.UTC))
    return _json(result.model_dump_json().encode())


@router.get("/tickers", response_model=schemas.TickerList, tags=["prices"])
async def tickers(request: Request) -> Response:
    """Every ticker with stored prices, and the sessions stored for it."""
    return _json(await _service(request).tickers())


@router.get("/predictions/latest", response_model=schemas.PredictionList, tags=["predictions"])
async def latest_predictions(request: Request) -> Response:
    """Each ticker's newest prediction, with its model version and kind."""
    return _json(await _service(request).latest(None))


@router.get(
    "/predictions/latest/{ticker}",
    response_model=schemas.Prediction,
    responses=_404,
    tags=["predictions"],
)
async def latest_prediction(request: Request, ticker: Ticker) -> Response:
    """One ticker's newest prediction."""
    return _json(await _service(request).latest(ticker.upper()))


@router.get(
    "/predictions/target/{target_date}",
    response_model=schemas.PredictionList,
    responses=_404,
    tags=["predictions"],
)
async def predictions_for_target(request: Request, target_date: schemas.IsoDate) -> Response:
    """Every prediction made for one target session (YYYY-MM-DD)."""
    return _json(await _service(request).for_target(target_date))


@router.get(
    "/tickers/{ticker}/predictions",
    response_model=schemas.PredictionPage,
    responses=_404,
    tags=["predictions"],
)
async def prediction_history(
    request: Request,
    ticker: Ticker,
    start: Start = None,
    end: End = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=schemas.MAX_PAGE_SIZE)] = 100,
) -> Response:
    """A ticker's predictions by as-of date, oldest first, paginated. Defaults to the year up to
    its newest prediction; ranges are capped at MAX_RANGE_DAYS."""
    return _json(await _service(request).history(ticker.upper(), start, end, page, page_size))


@router.get(
    "/tickers/{ticker}/prices",
    response_model=schemas.PriceHistory,
    responses=_404,
    tags=["prices"],
)
async def prices(
    request: Request,
    ticker: Ticker,
    start: Start = None,
    end: End = None,
    adjusted: Annotated[
        bool,
        Query(description="Adjusted for every split and dividend known now (default: as traded)"),
    ] = False,
) -> Response:
    """Stored daily bars of a ticker, as traded by default; defaults to the year up to its
    newest session. `basis` says which."""
    return _json(await _service(request).prices(ticker.upper(), start, end, adjusted))


@router.get(
    "/performance",
    response_model=schemas.Performance,
    responses=_404,
    tags=["models"],
)
async def performance(
    request: Request,
    window: Annotated[
        int | None,
        Query(ge=1, le=schemas.MAX_WINDOW, description="Scored sessions (default: rolling window)"),
    ] = None,
    ticker: Annotated[str | None, Query(pattern=schemas.TICKER_PATTERN)] = None,
) -> Response:
    """Out-of-sample MAE, MAPE, skill vs naive, direction accuracy and interval coverage over the
    newest `window` scored sessions, overall and per ticker."""
    return _json(await _service(request).performance(window, ticker.upper() if ticker else None))


@router.get(
    "/model/production",
    response_model=schemas.ProductionModel,
    responses=_404,
    tags=["models"],
)
async def production_model(request: Request) -> Response:
    """The version holding the MLflow alias `production`, its training cutoff and metrics."""
    return _json(await _service(request).production())


@router.get("/model/promotions", response_model=schemas.PromotionList, tags=["models"])
async def promotions(request: Request) -> Response:
    """Every move of the production alias, oldest first."""
    return _json(await _service(request).promotions())


@router.get(
    "/predictions/{ticker}/{as_of_date}/lineage",
    response_model=schemas.Lineage,
    responses=_404,
    tags=["predictions"],
)
async def lineage(request: Request, ticker: Ticker, as_of_date: schemas.IsoDate) -> Response:
    """Where one prediction came from: model version → MLflow run → dataset run → cutoff → the
    raw_prices partitions its features were computed from."""
    return _json(await _service(request).lineage(ticker.upper(), as_of_date))
