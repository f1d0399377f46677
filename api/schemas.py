"""Response bodies of the API: what a client may rely on, and what /openapi.json documents."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

# Caps on what one request may ask for: a bounded amount of work per request.
MAX_RANGE_DAYS = 3660
MAX_PAGE_SIZE = 1000
MAX_WINDOW = 2520
TICKER_PATTERN = r"^\^?[A-Za-z0-9][A-Za-z0-9.\-=]{0,14}$"


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date(value: Any) -> Any:
    # pydantic's lax mode reads "0" or "1700000000" as Unix times; a date here is YYYY-MM-DD only
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError(f"{value[:40]!r} is not a date as YYYY-MM-DD")
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]


class Problem(BaseModel):
    """Every error body: what went wrong, in words a caller can act on."""

    detail: str


class MissingTicker(BaseModel):
    ticker: str
    trade_date: dt.date
    reason: str


class Health(BaseModel):
    status: str = Field(description="'ok', or 'stale' when predictions lag the last session")
    database: bool
    newest_raw_partition: dt.date | None
    newest_prediction_partition: dt.date | None
    newest_target_date: dt.date | None
    last_session: dt.date | None = Field(description="newest session whose close has passed")
    stale: bool
    production_version: str | None
    model_name: str
    missing_tickers: list[MissingTicker] = Field(
        default_factory=list,
        description="configured tickers without a stored row on the newest raw_prices day, "
        "and why (no answer from the source, or rejected by validation)",
    )


class TickerInfo(BaseModel):
    ticker: str
    first_session: dt.date
    last_session: dt.date
    sessions: int


class TickerList(BaseModel):
    tickers: list[TickerInfo]


class Prediction(BaseModel):
    ticker: str
    as_of_date: dt.date
    target_date: dt.date
    last_close: float
    predicted_close: float
    lower: float | None
    upper: float | None
    predicted_return: float | None
    model_name: str
    model_version: str
    model_kind: str | None
    mlflow_run_id: str | None
    dataset_run_id: str | None
    in_sample: bool
    served_by: str | None = Field(None, description="'model', or 'naive fallback'")
    actual_close: float | None = Field(None, description="set once the target session closed")


class PredictionList(BaseModel):
    count: int
    predictions: list[Prediction]


NEXT_START = Field(
    default=None,
    description=f"Set when the range asked for spans more than {MAX_RANGE_DAYS} days: it was "
    "served from `start` for that many days (`end`), and the rest starts here.",
)


class PredictionPage(BaseModel):
    ticker: str
    start: dt.date = Field(description="First as-of date served (empty range if after `end`)")
    end: dt.date = Field(description="Last as-of date served")
    page: int
    page_size: int
    total: int
    next_start: dt.date | None = NEXT_START
    predictions: list[Prediction]


class PriceBar(BaseModel):
    trade_date: dt.date
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: float | None


class PriceHistory(BaseModel):
    ticker: str
    start: dt.date = Field(description="First session served (empty range if after `end`)")
    end: dt.date = Field(description="Last session served")
    next_start: dt.date | None = NEXT_START
    basis: Literal["as traded", "adjusted"] = Field(
        description="as traded: each bar as it traded that day; adjusted: for every split and "
        "dividend known now (the `adjusted_prices` view)"
    )
    prices: list[PriceBar]


class Scores(BaseModel):
    """Out-of-sample scores over the window; skill = 1 - MAE / naive MAE."""

    predictions: int
    first_session: dt.date | None
    last_session: dt.date | None
    mae: float | None
    mape_pct: float | None
    naive_mae: float | None
    skill: float | None
    direction_accuracy: float | None
    coverage_80: float | None
    coverage_80_band: list[float] | None = Field(
        None,
        description="95 % range of the coverage an exact 80 % interval shows on this many "
        "predictions: coverage outside it is miscalibration, not luck",
    )
    interval_score_pct: float | None = Field(
        None,
        description="mean Winkler interval score (α = 0.2) in per cent of the price: width plus "
        "10 × the distance by which the close fell outside; lower is better",
    )
    naive_coverage_80: float | None = Field(
        None,
        description="coverage of the naive baseline's own 80 % interval (tomorrow = today ± "
        "q·σ̂, q from its last year of scores, no adaptation) on the same predictions",
    )
    naive_interval_score_pct: float | None = Field(
        None, description="the naive baseline's interval score: beat it to earn the interval"
    )
    always_up_direction_accuracy: float | None = Field(
        None, description="share of sessions that closed up: the direction to beat"
    )


class TickerScores(Scores):
    ticker: str


class Performance(BaseModel):
    window_sessions: int
    overall: Scores
    tickers: list[TickerScores]


class ProductionModel(BaseModel):
    model_name: str
    version: str
    kind: str
    mlflow_run_id: str | None
    dataset_run_id: str | None
    cutoff: dt.date | None
    promoted_at: dt.datetime | None
    promotion_reason: str | None
    metrics: dict | None = Field(description="test metrics of the model, naive and always-up")


class Promotion(BaseModel):
    promoted_at: dt.datetime
    model_name: str
    previous_version: str | None
    new_version: str
    dataset_run_id: str | None
    reason: str
    action: str  # bootstrap | promote | demote | rollback | repair
    actor: str  # check | cli | policy | bootstrap | reconcile


class PromotionList(BaseModel):
    promotions: list[Promotion]


class RawPartitions(BaseModel):
    """The raw_prices partitions (sessions) the prediction's features were computed from."""

    first: dt.date | None
    last: dt.date | None
    count: int


class MlflowRun(BaseModel):
    run_id: str
    experiment_id: str | None
    status: str | None
    start_time: dt.datetime | None


class DatasetRun(BaseModel):
    dataset_run_id: str
    cutoff: dt.date
    reason: str | None
    created_at: dt.datetime | None


class Lineage(BaseModel):
    prediction: Prediction
    model_name: str
    model_version: str
    model_kind: str | None
    mlflow_run: MlflowRun | None
    dataset_run: DatasetRun | None
    cutoff: dt.date | None
    raw_prices: RawPartitions
