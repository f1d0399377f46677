"""A logged model that predicts from raw prices alone: naive or learned, one interface.

The MLflow artifact holds everything serving needs — weights, scalers, feature list, tickers,
sequence length, target scale and the interval's calibration scores — so
`models:/<name>@production` loaded from the registry alone turns a raw_prices frame into
next-session predictions. Features are computed from the frame's first row, exactly as
training computed them (train/serve skew).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stock_assets.ml.conformal import TARGET_MISCOVERAGE, quantile
from stock_assets.ml.features import FEATURES, WARMUP, compute_features
from stock_assets.ml.volatility import (
    EWMA_LAMBDA,
    next_session_sigma,
    recent_rows,
    sigma_memory,
)

NAIVE = "naive"
OUTPUT_COLUMNS = (
    "as_of_date",
    "ticker",
    "last_close",
    "predicted_return",
    "lower_return",
    "upper_return",
    "predicted_close",
    "lower",
    "upper",
    "sigma",
    "alpha",
)


@dataclass
class Bundle:
    kind: str  # "naive" or an architecture from stock_assets.ml.networks
    tickers: list[str]
    # typical half-width of the 80 % interval in log return; the whole interval for a model
    # logged before volatility scaling (no `scores`), else the fallback where σ̂ is unknown
    half_width: float
    seq_len: int = 1
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    scalers: dict = field(default_factory=dict)
    target_scale: float = 1.0
    model_params: dict = field(default_factory=dict)
    cutoff: str | None = None  # last session the model trained or calibrated on
    dataset_run_id: str | None = None
    # calibration scores |residual| / σ̂ (sorted, compacted): q(α) of the interval comes from them
    scores: list[float] = field(default_factory=list)
    ewma_lambda: float = EWMA_LAMBDA

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> Bundle:
        return cls(**json.loads(path.read_text()))

    def history_needed(self) -> int:
        """Rows per ticker before the first date the model can predict for."""
        return 1 if self.kind == NAIVE else WARMUP + self.seq_len


def _normalize(prices: pd.DataFrame) -> pd.DataFrame:
    out = prices
    if set(map(type, prices["trade_date"].to_numpy())) != {dt.date}:
        # strings or timestamps (a pyfunc caller's frame); stored prices are dates already,
        # and converting 500 tickers' tails cost the daily cycle 0.3 s
        out = prices.assign(trade_date=pd.to_datetime(prices["trade_date"]).dt.date)
    return out.sort_values(["ticker", "trade_date"], ignore_index=True)


def _check_tickers(bundle: Bundle, prices: pd.DataFrame, allow_gaps: bool) -> None:
    if bundle.kind == NAIVE:
        return  # tomorrow = today holds for any ticker
    asked = sorted(set(prices["ticker"]))
    if allow_gaps and set(asked) <= set(bundle.tickers):
        return
    if sorted(bundle.tickers) != asked:
        raise ValueError(
            f"this {bundle.kind} model was trained on tickers {sorted(bundle.tickers)} "
            f"and predicts exactly those; asked about {asked}"
        )


def predict_from_prices(
    bundle: Bundle,
    net,
    prices: pd.DataFrame,
    as_of: list[dt.date] | None = None,
    allow_gaps: bool = False,
) -> pd.DataFrame:
    """Predictions made after the close of each date in `as_of` (default: every date the
    history allows). Features always start at the frame's first row, as in training.

    `allow_gaps`: some of the model's tickers may lack rows (missing, rejected, delisted); their
    cells are NaN and so are their predictions — never filled with older data.
    """
    prices = _normalize(prices)
    _check_tickers(bundle, prices, allow_gaps)
    closes = prices.set_index(["trade_date", "ticker"])["close"]
    if bundle.kind == NAIVE:
        frame = prices[["trade_date", "ticker"]].assign(predicted_return=0.0)
        if as_of is not None:
            frame = frame[frame["trade_date"].isin(set(as_of))]
    else:
        import torch

        from stock_assets.ml.dataset import apply_scalers, build_panel

        unknown = sorted(set(bundle.features) - set(FEATURES))
        if unknown:
            raise ValueError(
                f"the model reads feature(s) {unknown} that this code does not compute: "
                "its feature list does not match the data"
            )
        feats = compute_features(prices, since=_first_window_day(prices, as_of, bundle.seq_len))
        feats["close_adj"] = closes.reindex(
            pd.MultiIndex.from_frame(feats[["trade_date", "ticker"]])
        ).to_numpy()
        scaled = apply_scalers(feats, bundle.scalers, bundle.features)
        if allow_gaps:
            scaled = _full_grid(scaled, bundle.tickers)
        panel = build_panel(scaled, bundle.features, bundle.tickers)
        ends = np.arange(bundle.seq_len - 1, len(panel.dates))
        if as_of is not None:
            wanted = set(as_of)
            ends = ends[np.array([d in wanted for d in panel.dates[ends]], dtype=bool)]
            short = sorted(wanted - set(panel.dates[ends]))
            if short:
                more = f" (and {len(short) - 1} more dates)" if len(short) > 1 else ""
                raise ValueError(
                    f"cannot predict as of {short[0]}{more}: the model needs "
                    f"{bundle.history_needed()} sessions of history per ticker up to that day"
                )
        if len(ends) == 0:
            raise ValueError(f"need at least {bundle.history_needed()} rows per ticker to predict")
        with torch.no_grad():
            net.eval()
            preds = []
            for i in range(0, len(ends), 1024):
                x = torch.from_numpy(panel.inputs(ends[i : i + 1024], bundle.seq_len))
                preds.append(net(x).numpy() * bundle.target_scale)
        pred = np.concatenate(preds)
        frame = pd.DataFrame(
            {
                "trade_date": np.repeat(panel.dates[ends], len(panel.tickers)),
                "ticker": np.tile(panel.tickers, len(ends)),
                "predicted_return": pred.ravel().astype(float),
            }
        )
    keys = pd.MultiIndex.from_frame(frame[["trade_date", "ticker"]])
    last = closes.reindex(keys).to_numpy()
    r = frame["predicted_return"].to_numpy()
    recent = (
        prices
        if as_of is None
        else recent_rows(prices, min(as_of), sigma_memory(bundle.ewma_lambda))
    )
    sigma = next_session_sigma(recent, bundle.ewma_lambda).reindex(keys).to_numpy()
    out = pd.DataFrame(
        {
            "as_of_date": frame["trade_date"].to_numpy(),
            "ticker": frame["ticker"].to_numpy(),
            "last_close": last,
            "predicted_return": r,
            "predicted_close": last * np.exp(r),
            "sigma": sigma,
        }
    )
    return with_interval(bundle, out, TARGET_MISCOVERAGE)


def _first_window_day(
    prices: pd.DataFrame, as_of: list[dt.date] | None, seq_len: int
) -> dt.date | None:
    """The oldest feature date a window ending on one of `as_of` reads (None: all of them).
    Prices: sorted by ticker and trade_date."""
    if not as_of:
        return None
    after_warmup = prices.groupby("ticker", sort=False).cumcount().to_numpy() >= WARMUP
    dates = np.sort(pd.unique(prices["trade_date"].to_numpy()[after_warmup]))
    i = int(np.searchsorted(dates, min(as_of)))
    return dates[max(0, i - (seq_len - 1))] if len(dates) else None


def with_interval(bundle: Bundle, frame: pd.DataFrame, alpha) -> pd.DataFrame:
    """Set the interval at miscoverage `alpha` (scalar or per row): prediction ± q(α)·σ̂ in log
    return, then prices. A model without calibration scores keeps its constant half-width."""
    r = frame["predicted_return"].to_numpy(float)
    alpha = np.broadcast_to(np.asarray(alpha, float), r.shape)
    if bundle.scores:
        half = quantile(bundle.scores, alpha) * frame["sigma"].to_numpy(float)
        half = np.where(np.isnan(half), bundle.half_width, half)
    else:
        half = np.full(r.shape, bundle.half_width)
    last = frame["last_close"].to_numpy(float)
    out = frame.assign(
        alpha=alpha,
        lower_return=r - half,
        upper_return=r + half,
        lower=last * np.exp(r - half),
        upper=last * np.exp(r + half),
    )
    return out[list(OUTPUT_COLUMNS)]


def _full_grid(frame: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
    """Every (date, ticker) of the frame's dates; a missing row is NaN throughout."""
    grid = pd.MultiIndex.from_product(
        [sorted(frame["trade_date"].unique()), tickers], names=["trade_date", "ticker"]
    )
    return frame.set_index(["trade_date", "ticker"]).reindex(grid).reset_index()


def build_net(bundle: Bundle):
    from stock_assets.ml.networks import Forecaster

    p = bundle.model_params
    return Forecaster(
        len(bundle.features),
        len(bundle.tickers),
        p["hidden"],
        p["layers"],
        p["dropout"],
        p["arch"],
    )


try:
    import mlflow.pyfunc

    class ForecasterModel(mlflow.pyfunc.PythonModel):
        """The MLflow face of a Bundle (+ weights): predict(raw_prices) → predictions."""

        def load_context(self, context) -> None:
            import torch

            self.bundle = Bundle.load(Path(context.artifacts["bundle"]))
            self.net = None
            if self.bundle.kind != NAIVE:
                self.net = build_net(self.bundle)
                state = torch.load(context.artifacts["weights"], weights_only=True)
                self.net.load_state_dict(state)
                self.net.eval()

        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            return predict_from_prices(self.bundle, self.net, model_input)

except ImportError:  # pragma: no cover - mlflow is a dependency
    pass
