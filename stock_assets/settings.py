"""Every setting the platform reads from the environment, in one place.

Settings are read when asked for (never cached at import), so a test or a command can change the
environment and see the change. `SETTINGS_DOC` is the configuration reference the README quotes.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

SETTINGS_DOC: dict[str, tuple[str, str]] = {
    "STOCK_ASSETS_HOME": (
        ".stock_assets",
        "State folder: embedded Postgres, DAGSTER_HOME, MLflow.",
    ),
    "STOCK_ASSETS_POSTGRES_URL": (
        "(unset: embedded)",
        "libpq URL of a Postgres server you run; unset starts the embedded one.",
    ),
    "STOCK_ASSETS_SOURCE": ("sample", "Price source: yfinance, csv, sample or synthetic."),
    "STOCK_ASSETS_TICKERS": ("(the source's)", "Comma-separated tickers."),
    "STOCK_ASSETS_START_DATE": ("(the source's)", "First trading_days partition, YYYY-MM-DD."),
    "STOCK_ASSETS_EXCHANGE": ("XNYS", "exchange_calendars code of the exchange."),
    "STOCK_ASSETS_TIMEZONE": ("America/New_York", "Time zone of the trading_days partitions."),
    "STOCK_ASSETS_CSV_DIR": ("(none)", "Folder of <TICKER>.csv files for the csv source."),
    "STOCK_ASSETS_SYNTHETIC_SEED": ("7", "Seed of the synthetic market."),
    "STOCK_ASSETS_SYNTHETIC_TICKERS": ("5", "Number of synthetic tickers (SYN000, SYN001, …)."),
    "STOCK_ASSETS_SYNTHETIC_START": ("2015-01-02", "First session of the synthetic market."),
    "STOCK_ASSETS_SYNTHETIC_END": ("2024-12-31", "Last session of the synthetic market."),
    "STOCK_ASSETS_SYNTHETIC_REGIME": (
        "(none)",
        "Volatility regime changes, `YYYY-MM-DD:vol[,…]` (base volatility 0.012).",
    ),
    "STOCK_ASSETS_YF_RETRIES": (
        "4",
        "yfinance: retries per ticker after an error or a rate limit.",
    ),
    "STOCK_ASSETS_YF_BACKOFF": ("2.0", "yfinance: first back-off in seconds, doubled per retry."),
    "STOCK_ASSETS_CHART_MAX_PARTITIONS": (
        "5",
        "Attach price charts only to runs of at most this many partitions.",
    ),
    "STOCK_ASSETS_API_HOST": ("127.0.0.1", "Address `stock-assets api` binds."),
    "STOCK_ASSETS_API_PORT": ("8000", "Port of `stock-assets api`."),
    "STOCK_ASSETS_API_DB_URL": (
        "(the platform's `stocks` DB)",
        "libpq URL the API reads through, e.g. a read-only role.",
    ),
    "STOCK_ASSETS_API_ALIAS_SECONDS": (
        "30",
        "How long the API trusts its reading of the `production` alias.",
    ),
}


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    home: Path
    postgres_url: str | None
    source: str
    tickers: tuple[str, ...] | None
    start_date: str | None
    exchange: str
    timezone: str
    csv_dir: Path | None
    synthetic_seed: int
    synthetic_tickers: int
    synthetic_start: str
    synthetic_end: str
    synthetic_regimes: tuple[tuple[str, float], ...]
    yf_retries: int
    yf_backoff: float
    chart_max_partitions: int

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlartifacts"


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _regimes(raw: str | None) -> tuple[tuple[str, float], ...]:
    if not raw:
        return ()
    out = []
    for part in raw.split(","):
        day, _, vol = part.strip().partition(":")
        try:
            out.append((str(dt.date.fromisoformat(day)), float(vol)))
        except ValueError:
            raise ValueError(
                f"STOCK_ASSETS_SYNTHETIC_REGIME: {part!r} is not YYYY-MM-DD:volatility"
            ) from None
    return tuple(out)


def load_settings() -> Settings:
    tickers_raw = _env("STOCK_ASSETS_TICKERS")
    tickers = None
    if tickers_raw is not None:
        tickers = tuple(t.strip() for t in tickers_raw.split(",") if t.strip())
    csv_dir = _env("STOCK_ASSETS_CSV_DIR")
    return Settings(
        home=Path(_env("STOCK_ASSETS_HOME") or ".stock_assets").expanduser().resolve(),
        postgres_url=_env("STOCK_ASSETS_POSTGRES_URL"),
        source=(_env("STOCK_ASSETS_SOURCE") or "sample").lower(),
        tickers=tickers,
        start_date=_env("STOCK_ASSETS_START_DATE"),
        exchange=_env("STOCK_ASSETS_EXCHANGE") or "XNYS",
        timezone=_env("STOCK_ASSETS_TIMEZONE") or "America/New_York",
        csv_dir=Path(csv_dir).expanduser().resolve() if csv_dir else None,
        synthetic_seed=_int("STOCK_ASSETS_SYNTHETIC_SEED", 7),
        synthetic_tickers=_int("STOCK_ASSETS_SYNTHETIC_TICKERS", 5),
        synthetic_start=_env("STOCK_ASSETS_SYNTHETIC_START") or "2015-01-02",
        synthetic_end=_env("STOCK_ASSETS_SYNTHETIC_END") or "2024-12-31",
        synthetic_regimes=_regimes(_env("STOCK_ASSETS_SYNTHETIC_REGIME")),
        yf_retries=_int("STOCK_ASSETS_YF_RETRIES", 4),
        yf_backoff=_float("STOCK_ASSETS_YF_BACKOFF", 2.0),
        chart_max_partitions=_int("STOCK_ASSETS_CHART_MAX_PARTITIONS", 5),
    )


RETRAINING_DOC: dict[str, tuple[str, str]] = {
    "STOCK_ASSETS_MODEL_NAME": ("stock_forecaster", "Registered model name in MLflow."),
    "STOCK_ASSETS_TRIALS": ("20", "Optuna trials per dataset run."),
    "STOCK_ASSETS_TUNING_SECONDS": ("(none)", "Optional wall-clock budget of the tuning."),
    "STOCK_ASSETS_MAX_EPOCHS": ("30", "Training epochs at most (early stopping ends sooner)."),
    "STOCK_ASSETS_CORRELATION_THRESHOLD": (
        "(none)",
        "Drop features more correlated than this on the train split.",
    ),
    "STOCK_ASSETS_PROMOTION_MARGIN": (
        "0.0",
        "Candidate MAE must be below production MAE × (1 − margin).",
    ),
    "STOCK_ASSETS_MIN_COMMON_WINDOW": (
        "20",
        "Fewest sessions the promotion check may compare on.",
    ),
}
SETTINGS_DOC.update(RETRAINING_DOC)


def retraining_settings() -> dict:
    threshold = _env("STOCK_ASSETS_CORRELATION_THRESHOLD")
    seconds = _env("STOCK_ASSETS_TUNING_SECONDS")
    return {
        "model_name": _env("STOCK_ASSETS_MODEL_NAME") or "stock_forecaster",
        "n_trials": _int("STOCK_ASSETS_TRIALS", 20),
        "timeout_seconds": float(seconds) if seconds else None,
        "max_epochs": _int("STOCK_ASSETS_MAX_EPOCHS", 30),
        "correlation_threshold": float(threshold) if threshold else None,
        "promotion_margin": _float("STOCK_ASSETS_PROMOTION_MARGIN", 0.0),
        "min_common_window": _int("STOCK_ASSETS_MIN_COMMON_WINDOW", 20),
    }


OPERATIONS_DOC: dict[str, tuple[str, str]] = {
    "STOCK_ASSETS_ROLLING_WINDOW": ("20", "Sessions in performance_log's rolling summary."),
    "STOCK_ASSETS_EXPORT_DIR": ("$STOCK_ASSETS_HOME/predictions", "Folder of the JSON files."),
    "STOCK_ASSETS_INGEST_RETRIES": ("3", "raw_prices retries when data arrives late."),
    "STOCK_ASSETS_INGEST_RETRY_SECONDS": ("600", "First retry delay, doubled each time."),
    "STOCK_ASSETS_SKILL_FLOOR": ("-0.05", "Retrain when rolling skill stays below this…"),
    "STOCK_ASSETS_SKILL_SESSIONS": ("5", "…for this many consecutive sessions."),
    "STOCK_ASSETS_MAPE_CEILING": ("3.0", "Retrain when rolling MAPE (%) exceeds this."),
    "STOCK_ASSETS_COVERAGE_BAND": ("0.60,0.97", "Retrain when 80 % coverage leaves this band."),
    "STOCK_ASSETS_STALE_SESSIONS": ("60", "Retrain when the newest dataset run is older."),
    "STOCK_ASSETS_COOLDOWN_SESSIONS": ("10", "Sessions after a retraining cutoff before another."),
    "STOCK_ASSETS_FIRST_MODEL_SESSIONS": (
        "750",
        "History needed before the first learned model is requested.",
    ),
}
SETTINGS_DOC.update(OPERATIONS_DOC)


def operations_settings() -> dict:
    band = (_env("STOCK_ASSETS_COVERAGE_BAND") or "0.60,0.97").split(",")
    if len(band) != 2:
        raise ValueError(f"STOCK_ASSETS_COVERAGE_BAND must be 'low,high', got {band!r}")
    return {
        "rolling_window": _int("STOCK_ASSETS_ROLLING_WINDOW", 20),
        "export_dir": _env("STOCK_ASSETS_EXPORT_DIR"),
        "ingest_retries": _int("STOCK_ASSETS_INGEST_RETRIES", 3),
        "ingest_retry_seconds": _int("STOCK_ASSETS_INGEST_RETRY_SECONDS", 600),
        "thresholds": {
            "skill_floor": _float("STOCK_ASSETS_SKILL_FLOOR", -0.05),
            "skill_sessions": _int("STOCK_ASSETS_SKILL_SESSIONS", 5),
            "mape_ceiling": _float("STOCK_ASSETS_MAPE_CEILING", 3.0),
            "coverage_low": float(band[0]),
            "coverage_high": float(band[1]),
            "stale_sessions": _int("STOCK_ASSETS_STALE_SESSIONS", 60),
            "cooldown_sessions": _int("STOCK_ASSETS_COOLDOWN_SESSIONS", 10),
            "first_model_sessions": _int("STOCK_ASSETS_FIRST_MODEL_SESSIONS", 750),
        },
    }


ALERT_DOC: dict[str, tuple[str, str]] = {
    "STOCK_ASSETS_ALERT_SMTP_HOST": ("(none: no email)", "SMTP server for failure alerts."),
    "STOCK_ASSETS_ALERT_SMTP_PORT": ("587", "SMTP port (465: implicit TLS)."),
    "STOCK_ASSETS_ALERT_SMTP_STARTTLS": ("true", "Upgrade with STARTTLS (ignored on port 465)."),
    "STOCK_ASSETS_ALERT_SMTP_USER": ("(none)", "SMTP login, when the server wants one."),
    "STOCK_ASSETS_ALERT_SMTP_PASSWORD": ("(none)", "SMTP password."),
    "STOCK_ASSETS_ALERT_EMAIL_FROM": ("stock-assets@localhost", "Sender of alert mail."),
    "STOCK_ASSETS_ALERT_EMAIL_TO": ("(none)", "Comma-separated recipients (needed with a host)."),
    "STOCK_ASSETS_ALERT_WEBHOOK_URL": ("(none: no webhook)", "URL that gets each alert as JSON."),
    "STOCK_ASSETS_ALERT_TIMEOUT": ("10", "Seconds per delivery attempt."),
}
SETTINGS_DOC.update(ALERT_DOC)


def _flag(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def alert_settings() -> dict:
    to = tuple(
        a.strip() for a in (_env("STOCK_ASSETS_ALERT_EMAIL_TO") or "").split(",") if a.strip()
    )
    host = _env("STOCK_ASSETS_ALERT_SMTP_HOST")
    if host and not to:
        raise ValueError(
            "STOCK_ASSETS_ALERT_SMTP_HOST is set but STOCK_ASSETS_ALERT_EMAIL_TO is empty"
        )
    return {
        "smtp_host": host,
        "smtp_port": _int("STOCK_ASSETS_ALERT_SMTP_PORT", 587),
        "smtp_starttls": _flag("STOCK_ASSETS_ALERT_SMTP_STARTTLS", True),
        "smtp_user": _env("STOCK_ASSETS_ALERT_SMTP_USER"),
        "smtp_password": _env("STOCK_ASSETS_ALERT_SMTP_PASSWORD"),
        "email_from": _env("STOCK_ASSETS_ALERT_EMAIL_FROM") or "stock-assets@localhost",
        "email_to": to,
        "webhook_url": _env("STOCK_ASSETS_ALERT_WEBHOOK_URL"),
        "timeout": _float("STOCK_ASSETS_ALERT_TIMEOUT", 10.0),
    }


def api_settings() -> dict:
    seconds = _float("STOCK_ASSETS_API_ALIAS_SECONDS", 30.0)
    if seconds < 0:
        raise ValueError(f"STOCK_ASSETS_API_ALIAS_SECONDS must be ≥ 0, got {seconds}")
    return {"alias_seconds": seconds}
