"""Every setting of the platform in one typed model, nested by concern, each default written once.

A field that a user may set carries its environment variable and one line of documentation; the
README's configuration table is generated from these fields (`settings_markdown`) and a test
keeps the two equal. Settings are read when asked for (never cached at import), so a test or a
command can change the environment and see the change. No Dagster here: every layer may read it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# ACI's learning rate per scored session, from bench/intervals.py: 0.02 brought the sessions
# after the largest volatility jump to 0.77 (Q4 2018) and 0.81 (Sep 2008) at an interval score
# within 0.3 % of GARCH(1,1)'s; 0.05 covers about the same but 2-3 % worse.
ACI_GAMMA = 0.02


def _text(raw: str, name: str) -> str:
    return raw


def _lower(raw: str, name: str) -> str:
    return raw.lower()


def _int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None


def _float(raw: str, name: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _port(raw: str, name: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{name} must be a port number, got {raw!r}")
    return int(raw)


def _flag(raw: str, name: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _names(raw: str, name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _path(raw: str, name: str) -> Path:
    return Path(raw).expanduser().resolve()


def _regimes(raw: str, name: str) -> tuple[tuple[str, float], ...]:
    out = []
    for part in raw.split(","):
        day, _, vol = part.strip().partition(":")
        try:
            out.append((str(dt.date.fromisoformat(day)), float(vol)))
        except ValueError:
            raise ValueError(f"{name}: {part!r} is not YYYY-MM-DD:volatility") from None
    return tuple(out)


def setting(
    env: str,
    default: Any,
    doc: str,
    parse: Callable[[str, str], Any] = _text,
    shown: str | None = None,
) -> Any:
    """A field read from `env`; `shown` is how the docs name a default that is not a literal."""
    return field(default=default, metadata={"env": env, "doc": doc, "parse": parse, "shown": shown})


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


class Section:
    """A group of settings; `from_env` reads the fields that name an environment variable."""

    @classmethod
    def from_env(cls, **overrides: Any) -> Any:
        values = {}
        for f in fields(cls):  # type: ignore[arg-type]
            env = f.metadata.get("env")
            raw = _env(env) if env else None
            if raw is not None:
                values[f.name] = f.metadata["parse"](raw, env)
        return cls(**{**values, **overrides}).validate()

    def validate(self) -> Any:
        return self


@dataclass(frozen=True)
class MarketSettings(Section):
    """Which prices: the source, tickers, exchange and the trading_days partitions."""

    source: str = setting(
        "STOCK_ASSETS_SOURCE", "sample", "Price source: yfinance, csv, sample or synthetic.", _lower
    )
    tickers: tuple[str, ...] | None = setting(
        "STOCK_ASSETS_TICKERS", None, "Comma-separated tickers.", _names, "(the source's)"
    )
    start_date: str | None = setting(
        "STOCK_ASSETS_START_DATE",
        None,
        "First trading_days partition, YYYY-MM-DD.",
        shown="(the source's)",
    )
    exchange: str = setting(
        "STOCK_ASSETS_EXCHANGE", "XNYS", "exchange_calendars code of the exchange."
    )
    timezone: str = setting(
        "STOCK_ASSETS_TIMEZONE", "America/New_York", "Time zone of the trading_days partitions."
    )
    chart_max_partitions: int = setting(
        "STOCK_ASSETS_CHART_MAX_PARTITIONS",
        5,
        "Attach price charts only to runs of at most this many partitions.",
        _int,
    )
    settle_minutes: int = setting(
        "STOCK_ASSETS_SETTLE_MINUTES",
        30,
        "A live source's session is ingested only this long after its close (early closes "
        "from the exchange calendar).",
        _int,
    )


@dataclass(frozen=True)
class SourceSettings(Section):
    """How each price source reads: the csv folder, the synthetic market, yfinance's retries."""

    csv_dir: Path | None = setting(  # noqa: RUF009 (a field with metadata)
        "STOCK_ASSETS_CSV_DIR",
        None,
        "Folder of <TICKER>.csv files for the csv source.",
        _path,
        "(none)",
    )
    synthetic_seed: int = setting(
        "STOCK_ASSETS_SYNTHETIC_SEED", 7, "Seed of the synthetic market.", _int
    )
    synthetic_tickers: int = setting(
        "STOCK_ASSETS_SYNTHETIC_TICKERS",
        5,
        "Number of synthetic tickers (SYN000, SYN001, …).",
        _int,
    )
    synthetic_start: str = setting(
        "STOCK_ASSETS_SYNTHETIC_START", "2015-01-02", "First session of the synthetic market."
    )
    synthetic_end: str = setting(
        "STOCK_ASSETS_SYNTHETIC_END", "2024-12-31", "Last session of the synthetic market."
    )
    synthetic_regimes: tuple[tuple[str, float], ...] = setting(
        "STOCK_ASSETS_SYNTHETIC_REGIME",
        (),
        "Volatility regime changes, `YYYY-MM-DD:vol[,…]` (base volatility 0.012).",
        _regimes,
        "(none)",
    )
    yf_retries: int = setting(
        "STOCK_ASSETS_YF_RETRIES",
        4,
        "yfinance: retries per ticker after an error or a rate limit.",
        _int,
    )
    yf_backoff: float = setting(
        "STOCK_ASSETS_YF_BACKOFF",
        2.0,
        "yfinance: first back-off in seconds, doubled per retry.",
        _float,
    )


@dataclass(frozen=True)
class RetrainingSettings(Section):
    """Budgets and rules of a retraining, sized for 2 CPU cores. Fields without a variable are
    fixed in code and shown in the UI through the `retraining` resource."""

    model_name: str = setting(
        "STOCK_ASSETS_MODEL_NAME", "stock_forecaster", "Registered model name in MLflow."
    )
    n_trials: int = setting("STOCK_ASSETS_TRIALS", 20, "Optuna trials per dataset run.", _int)
    timeout_seconds: float | None = setting(
        "STOCK_ASSETS_TUNING_SECONDS",
        None,
        "Optional wall-clock budget of the tuning.",
        _float,
        "(none)",
    )
    max_epochs: int = setting(
        "STOCK_ASSETS_MAX_EPOCHS", 30, "Training epochs at most (early stopping ends sooner).", _int
    )
    correlation_threshold: float | None = setting(
        "STOCK_ASSETS_CORRELATION_THRESHOLD",
        None,
        "Drop features more correlated than this on the train split.",
        _float,
        "(none)",
    )
    promotion_margin: float = setting(
        "STOCK_ASSETS_PROMOTION_MARGIN",
        0.0,
        "Candidate MAE must be below production MAE × (1 − margin).",
        _float,
    )
    promotion_dm_pvalue: float | None = setting(
        "STOCK_ASSETS_PROMOTION_DM_PVALUE",
        None,
        "Also require the one-sided Diebold–Mariano p-value (candidate beats production on "
        "absolute error) below this.",
        _float,
        "(off)",
    )
    min_common_window: int = setting(
        "STOCK_ASSETS_MIN_COMMON_WINDOW",
        20,
        "Fewest sessions the promotion check may compare on.",
        _int,
    )
    validation: float = 0.15
    calibration: float = 0.10
    test: float = 0.15
    gap: int = 64
    patience: int = 5
    seed: int = 0
    seq_lens: tuple[int, ...] = (10, 20, 40, 60)
    hidden_sizes: tuple[int, ...] = (16, 32, 64)
    layer_counts: tuple[int, ...] = (1, 2)
    batch_sizes: tuple[int, ...] = (32, 64, 128)
    architectures: tuple[str, ...] = ("lstm", "lstm_attention", "lstm_cross")

    def validate(self) -> RetrainingSettings:
        if self.gap < max(self.seq_lens):
            raise ValueError(
                f"gap {self.gap} is shorter than the longest sequence length "
                f"{max(self.seq_lens)}: windows would reach across splits"
            )
        return self


@dataclass(frozen=True)
class OperationsSettings(Section):
    """Daily operations: scoring window, JSON files, late-data retries."""

    rolling_window: int = setting(
        "STOCK_ASSETS_ROLLING_WINDOW", 20, "Sessions in performance_log's rolling summary.", _int
    )
    export_dir: str | None = setting(
        "STOCK_ASSETS_EXPORT_DIR",
        None,
        "Folder of the JSON files.",
        shown="$STOCK_ASSETS_HOME/predictions",
    )
    ingest_retries: int = setting(
        "STOCK_ASSETS_INGEST_RETRIES", 3, "raw_prices retries when data arrives late.", _int
    )
    ingest_retry_seconds: int = setting(
        "STOCK_ASSETS_INGEST_RETRY_SECONDS", 600, "First retry delay, doubled each time.", _int
    )
    overlap_sessions: int = setting(
        "STOCK_ASSETS_OVERLAP_SESSIONS",
        5,
        "Stored sessions each ingest re-reads to catch vendor restatements.",
        _int,
    )
    max_missing_share: float = setting(
        "STOCK_ASSETS_MAX_MISSING_SHARE",
        0.10,
        "Share of tickers a session may miss (no row, or rejected) before raw_prices' "
        "tickers_complete check blocks downstream; fewer only warn.",
        _float,
    )
    aci_gamma: float = setting(
        "STOCK_ASSETS_ACI_GAMMA",
        ACI_GAMMA,
        "Learning rate of the interval's online adaptation (ACI) per scored session; "
        "0 turns adaptation off.",
        _float,
    )

    def validate(self) -> OperationsSettings:
        if not 0.0 <= self.max_missing_share < 1.0:
            raise ValueError(
                f"STOCK_ASSETS_MAX_MISSING_SHARE must be in [0, 1), got {self.max_missing_share}"
            )
        if not 0.0 <= self.aci_gamma <= 0.5:
            raise ValueError(f"STOCK_ASSETS_ACI_GAMMA must be in [0, 0.5], got {self.aci_gamma}")
        return self


@dataclass(frozen=True)
class PolicySettings(Section):
    """When the sensor asks for a retraining; the reasoning behind each default is in
    `stock_assets/lifecycle/policy.py`."""

    skill_floor: float = setting(
        "STOCK_ASSETS_SKILL_FLOOR", -0.05, "Retrain when rolling skill stays below this…", _float
    )
    skill_sessions: int = setting(
        "STOCK_ASSETS_SKILL_SESSIONS", 5, "…for this many consecutive sessions.", _int
    )
    mape_ceiling: float = setting(
        "STOCK_ASSETS_MAPE_CEILING", 3.0, "Retrain when rolling MAPE (%) exceeds this.", _float
    )
    coverage_significance: float = setting(
        "STOCK_ASSETS_COVERAGE_SIGNIFICANCE",
        0.01,
        "Retrain when the rolling interval hits are outside the binomial acceptance region "
        "of an exact 80 % interval at this significance.",
        _float,
    )
    min_scored: int = 10
    stale_sessions: int = setting(
        "STOCK_ASSETS_STALE_SESSIONS", 60, "Retrain when the newest dataset run is older.", _int
    )
    cooldown_sessions: int = setting(
        "STOCK_ASSETS_COOLDOWN_SESSIONS",
        10,
        "Sessions after a retraining cutoff before another.",
        _int,
    )
    first_model_sessions: int = setting(
        "STOCK_ASSETS_FIRST_MODEL_SESSIONS",
        750,
        "History needed before the first learned model is requested.",
        _int,
    )
    demotion_sessions: int = setting(
        "STOCK_ASSETS_DEMOTION_SESSIONS",
        40,
        "Scored out-of-sample sessions of the serving learned model the demotion test reads.",
        _int,
    )
    demotion_significance: float = setting(
        "STOCK_ASSETS_DEMOTION_SIGNIFICANCE",
        0.05,
        "Demote to naive when the one-sided DM test says production is worse at this level "
        "(0: never).",
        _float,
    )

    def validate(self) -> PolicySettings:
        problems = []
        if not 0 < self.coverage_significance < 1:
            problems.append(f"coverage significance {self.coverage_significance} must be in (0, 1)")
        if self.skill_floor >= 1:
            problems.append(f"skill_floor {self.skill_floor} ≥ 1 can never be met")
        if self.skill_sessions < 1:
            problems.append(f"skill_sessions {self.skill_sessions} must be at least 1")
        if self.mape_ceiling <= 0:
            problems.append(f"mape_ceiling {self.mape_ceiling} must be positive")
        if not 0 <= self.demotion_significance < 1:
            problems.append(f"demotion significance {self.demotion_significance} must be in [0, 1)")
        if self.demotion_sessions < 3:
            problems.append(f"demotion_sessions {self.demotion_sessions} must be at least 3")
        for name in ("min_scored", "stale_sessions", "cooldown_sessions", "first_model_sessions"):
            if getattr(self, name) < 0:
                problems.append(f"{name} {getattr(self, name)} must not be negative")
        if problems:
            raise ValueError("impossible retraining thresholds: " + "; ".join(problems))
        return self


@dataclass(frozen=True)
class AlertSettings(Section):
    """Where failure alerts go; neither channel set means log only."""

    smtp_host: str | None = setting(
        "STOCK_ASSETS_ALERT_SMTP_HOST",
        None,
        "SMTP server for failure alerts.",
        shown="(none: no email)",
    )
    smtp_port: int = setting(
        "STOCK_ASSETS_ALERT_SMTP_PORT", 587, "SMTP port (465: implicit TLS).", _int
    )
    smtp_starttls: bool = setting(
        "STOCK_ASSETS_ALERT_SMTP_STARTTLS",
        True,
        "Upgrade with STARTTLS (ignored on port 465).",
        _flag,
        "true",
    )
    smtp_user: str | None = setting(
        "STOCK_ASSETS_ALERT_SMTP_USER",
        None,
        "SMTP login, when the server wants one.",
        shown="(none)",
    )
    smtp_password: str | None = setting(
        "STOCK_ASSETS_ALERT_SMTP_PASSWORD", None, "SMTP password.", shown="(none)"
    )
    email_from: str = setting(
        "STOCK_ASSETS_ALERT_EMAIL_FROM", "stock-assets@localhost", "Sender of alert mail."
    )
    email_to: tuple[str, ...] = setting(
        "STOCK_ASSETS_ALERT_EMAIL_TO",
        (),
        "Comma-separated recipients (needed with a host).",
        _names,
        "(none)",
    )
    webhook_url: str | None = setting(
        "STOCK_ASSETS_ALERT_WEBHOOK_URL",
        None,
        "URL that gets each alert as JSON.",
        shown="(none: no webhook)",
    )
    timeout: float = setting(
        "STOCK_ASSETS_ALERT_TIMEOUT", 10.0, "Seconds per delivery attempt.", _float
    )
    retry_max_seconds: float = setting(
        "STOCK_ASSETS_ALERT_RETRY_MAX_SECONDS",
        3600.0,
        "A failed delivery is retried after 60 s, doubling up to this.",
        _float,
    )
    give_up_hours: float = setting(
        "STOCK_ASSETS_ALERT_GIVE_UP_HOURS",
        72.0,
        "An alert no channel could deliver for this long is dropped (and says so).",
        _float,
    )
    first_tick_hours: float = setting(
        "STOCK_ASSETS_ALERT_FIRST_TICK_HOURS",
        24.0,
        "An alert sensor's first tick also alerts on failures this recent (a run that failed "
        "before the daemon ever ran); older history is not alerted.",
        _float,
    )

    def validate(self) -> AlertSettings:
        if self.smtp_host and not self.email_to:
            raise ValueError(
                "STOCK_ASSETS_ALERT_SMTP_HOST is set but STOCK_ASSETS_ALERT_EMAIL_TO is empty"
            )
        if self.retry_max_seconds < 60:
            raise ValueError(
                "STOCK_ASSETS_ALERT_RETRY_MAX_SECONDS must be ≥ 60 (the first back-off), "
                f"got {self.retry_max_seconds:g}"
            )
        if self.first_tick_hours < 0:
            raise ValueError(
                f"STOCK_ASSETS_ALERT_FIRST_TICK_HOURS must be >= 0, got {self.first_tick_hours:g}"
            )
        if self.give_up_hours <= 0:
            raise ValueError(
                f"STOCK_ASSETS_ALERT_GIVE_UP_HOURS must be > 0, got {self.give_up_hours:g}"
            )
        return self


@dataclass(frozen=True)
class ApiSettings(Section):
    """The prediction API."""

    host: str = setting("STOCK_ASSETS_API_HOST", "127.0.0.1", "Address `stock-assets api` binds.")
    port: int = setting("STOCK_ASSETS_API_PORT", 8000, "Port of `stock-assets api`.", _port)
    db_url: str | None = setting(
        "STOCK_ASSETS_API_DB_URL",
        None,
        "libpq URL the API reads through, e.g. a read-only role.",
        shown="(the platform's `stocks` DB)",
    )
    alias_seconds: float = setting(
        "STOCK_ASSETS_API_ALIAS_SECONDS",
        30.0,
        "How long the API trusts its reading of the `production` alias.",
        _float,
    )

    def validate(self) -> ApiSettings:
        if self.alias_seconds < 0:
            raise ValueError(
                f"STOCK_ASSETS_API_ALIAS_SECONDS must be ≥ 0, got {self.alias_seconds}"
            )
        return self


@dataclass(frozen=True)
class Settings:
    """The whole configuration: where state lives, plus one section per concern."""

    home: Path = setting(  # noqa: RUF009 (a field with metadata)
        "STOCK_ASSETS_HOME",
        Path(".stock_assets"),
        "State folder: embedded Postgres, DAGSTER_HOME, MLflow.",
        _path,
        ".stock_assets",
    )
    postgres_url: str | None = setting(
        "STOCK_ASSETS_POSTGRES_URL",
        None,
        "libpq URL of a Postgres server you run; unset starts the embedded one.",
        shown="(unset: embedded)",
    )
    lock_timeout_seconds: float = setting(
        "STOCK_ASSETS_LOCK_TIMEOUT_SECONDS",
        120.0,
        "A writer waiting longer than this for another's lock fails, writing nothing.",
        _float,
    )
    statement_timeout_seconds: float = setting(
        "STOCK_ASSETS_STATEMENT_TIMEOUT_SECONDS",
        900.0,
        "A write statement running longer than this is cancelled, writing nothing.",
        _float,
    )
    torch_threads: int = setting(
        "STOCK_ASSETS_TORCH_THREADS",
        1,
        "PyTorch threads per process that trains or predicts (intra- and inter-op). Keep "
        "concurrent runs × threads ≤ cores: past that, training slows by orders of magnitude.",
        _int,
    )
    market: MarketSettings = field(default_factory=MarketSettings)
    sources: SourceSettings = field(default_factory=SourceSettings)
    retraining: RetrainingSettings = field(default_factory=RetrainingSettings)
    operations: OperationsSettings = field(default_factory=OperationsSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    api: ApiSettings = field(default_factory=ApiSettings)

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlartifacts"

    def with_market(self, **changes: Any) -> Settings:
        """A copy with some market fields changed (tests, benchmarks, the demo)."""
        return dataclasses.replace(self, market=dataclasses.replace(self.market, **changes))


SECTIONS: dict[str, type[Section]] = {
    "market": MarketSettings,
    "sources": SourceSettings,
    "retraining": RetrainingSettings,
    "operations": OperationsSettings,
    "policy": PolicySettings,
    "alerts": AlertSettings,
    "api": ApiSettings,
}


def load_settings() -> Settings:
    home = _env("STOCK_ASSETS_HOME")
    return Settings(
        home=_path(home, "STOCK_ASSETS_HOME") if home else Path(".stock_assets").resolve(),
        postgres_url=_env("STOCK_ASSETS_POSTGRES_URL"),
        **{
            f.name: f.metadata["parse"](raw, f.metadata["env"])
            for f in fields(Settings)
            if (f.name.endswith("_timeout_seconds") or f.name == "torch_threads")
            and (raw := _env(f.metadata["env"]))
        },
        **{name: section.from_env() for name, section in SECTIONS.items()},
    )


def _documented(cls: type) -> list[tuple[str, str, str]]:
    rows = []
    for f in fields(cls):
        if "env" not in f.metadata:
            continue
        shown = f.metadata["shown"]
        if shown is None:
            shown = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
        rows.append((f.metadata["env"], shown, f.metadata["doc"]))
    return rows


SETTINGS_DOC: dict[str, tuple[str, str]] = {
    env: (shown, doc)
    for cls in (Settings, *SECTIONS.values())
    for env, shown, doc in _documented(cls)
}


def settings_markdown() -> str:
    """The README's configuration table, generated from the fields above."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for env, (shown, doc) in SETTINGS_DOC.items():
        lines.append(f"| `{env}` | `{shown}` | {doc} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_markdown())
