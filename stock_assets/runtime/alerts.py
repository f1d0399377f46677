"""Failure alerts by email (SMTP) and/or webhook (JSON POST). No Dagster here: the sensors in
`defs/alerts.py` decide *what* to say; this module delivers it.

With neither channel configured an alert is only logged, so a laptop needs no mail server. A
channel that fails does not stop the other; the error names every channel that failed.

An outage delays alerts instead of dropping them: a channel that failed keeps the alert in an
`Outbox` (the sensor's cursor holds it), retried on later ticks with a doubling back-off up to
`retry_max_seconds`, and only on the channels that have not delivered it, so each channel
delivers each alert once. An alert still undelivered after `give_up_hours` is dropped, loudly.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from email.message import EmailMessage
from typing import Any

from stock_assets.settings import AlertSettings

log = logging.getLogger("stock_assets.runtime.alerts")


class AlertDeliveryError(RuntimeError):
    """At least one configured channel could not deliver the alert."""

    def __init__(self, message: str, failed: Collection[str] = (), delivered: Collection[str] = ()):
        super().__init__(message)
        self.failed, self.delivered = tuple(failed), tuple(delivered)


@dataclass(frozen=True)
class Alert:
    kind: str  # "run_failure" or "check_failure"
    subject: str
    body: str
    details: dict[str, Any] = field(default_factory=dict)


def _email(alert: Alert, cfg: AlertSettings) -> None:
    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = cfg.email_from
    message["To"] = ", ".join(cfg.email_to)
    message.set_content(alert.body)
    timeout = cfg.timeout
    if cfg.smtp_port == 465:
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            cfg.smtp_host, 465, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=timeout)
    with client:
        if cfg.smtp_port != 465 and cfg.smtp_starttls:
            client.starttls(context=ssl.create_default_context())
        if cfg.smtp_user:
            client.login(cfg.smtp_user, cfg.smtp_password or "")
        client.send_message(message)


def _webhook(alert: Alert, cfg: AlertSettings) -> None:
    payload = json.dumps(asdict(alert), default=str).encode()
    request = urllib.request.Request(
        cfg.webhook_url,
        data=payload,
        headers={"Content-Type": "application/json", "User-Agent": "stock-assets-alerts"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=cfg.timeout) as response:
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(
                cfg.webhook_url, response.status, "non-2xx answer", response.headers, None
            )


def configured(cfg: AlertSettings) -> tuple[str, ...]:
    """The channels `cfg` sends on."""
    return tuple(
        name for name, on in (("email", cfg.smtp_host), ("webhook", cfg.webhook_url)) if on
    )


def deliver(alert: Alert, cfg: AlertSettings, only: Collection[str] | None = None) -> list[str]:
    """Send `alert` on every configured channel (or those of `only`); returns the channels
    that delivered it."""
    senders = {"email": _email, "webhook": _webhook}
    channels = [(name, senders[name]) for name in configured(cfg) if only is None or name in only]
    if not channels and only is not None:
        return []
    if not channels:
        log.warning("alert (no email or webhook configured): %s\n%s", alert.subject, alert.body)
        return []
    delivered, failed = [], []
    for name, send in channels:
        try:
            send(alert, cfg)
            delivered.append(name)
        except (OSError, smtplib.SMTPException, urllib.error.URLError) as exc:
            failed.append((name, f"{name}: {type(exc).__name__}: {exc}"))
    if failed:
        raise AlertDeliveryError(
            f"alert {alert.subject!r} not delivered by "
            + "; ".join(text for _, text in failed)
            + (f" (delivered by {', '.join(delivered)})" if delivered else ""),
            failed=[name for name, _ in failed],
            delivered=delivered,
        )
    return delivered


@dataclass(frozen=True)
class Pending:
    """An alert some channels have not delivered yet."""

    key: str  # what it is about, e.g. "check:1234" (one alert per key)
    alert: Alert
    channels: tuple[str, ...]  # the channels still to deliver it
    attempts: int
    first_failed: float  # epoch seconds
    next_at: float
    error: str


@dataclass
class Outbox:
    """Alerts waiting for a channel to come back, as the sensor cursor keeps them (JSON)."""

    pending: list[Pending] = field(default_factory=list)
    MAX_PENDING = 500  # a cursor stays small; past this the oldest are dropped, loudly

    def to_json(self) -> list[dict]:
        return [asdict(p) for p in self.pending]

    @classmethod
    def from_json(cls, rows: list[dict] | None) -> Outbox:
        return cls(
            [
                Pending(**{**r, "alert": Alert(**r["alert"]), "channels": tuple(r["channels"])})
                for r in rows or []
            ]
        )

    def send(self, key: str, alert: Alert, cfg: AlertSettings, now: float | None = None) -> str:
        """Deliver a new alert; channels that fail keep it here. Returns what happened."""
        if any(p.key == key for p in self.pending):
            return f"{key}: already waiting"
        now = clock() if now is None else now
        try:
            deliver(alert, cfg)
            return ""
        except AlertDeliveryError as exc:
            wait = backoff(1, cfg)
            self.pending.append(Pending(key, alert, exc.failed, 1, now, now + wait, str(exc)))
            said = [f"{exc} (retrying in {wait:.0f} s)", *self._trim()]
            return "; ".join(said)

    def retry_due(self, cfg: AlertSettings, now: float | None = None) -> list[str]:
        """Try again every alert whose back-off has passed; returns what still failed or was
        dropped."""
        now = clock() if now is None else now
        problems, kept = [], []
        for p in self.pending:
            channels = tuple(c for c in p.channels if c in configured(cfg))
            if not channels:
                problems.append(f"{p.key}: dropped, its channels are no longer configured")
                continue
            if p.next_at > now:
                kept.append(replace(p, channels=channels))
                continue
            try:
                deliver(p.alert, cfg, only=channels)
                continue
            except AlertDeliveryError as exc:
                failed = tuple(c for c in channels if c in exc.failed)
                if now - p.first_failed >= cfg.give_up_hours * 3600:
                    problems.append(
                        f"{p.key}: dropped after {p.attempts + 1} attempts over "
                        f"{cfg.give_up_hours:g} h: {exc}"
                    )
                    continue
                wait = backoff(p.attempts + 1, cfg)
                kept.append(
                    replace(
                        p,
                        channels=failed,
                        attempts=p.attempts + 1,
                        next_at=now + wait,
                        error=str(exc),
                    )
                )
                problems.append(f"{exc} (attempt {p.attempts + 1}, retrying in {wait:.0f} s)")
        self.pending = kept
        return problems + self._trim()

    def _trim(self) -> list[str]:
        """Past MAX_PENDING the oldest are dropped, each named: the cursor must stay small even
        through a long outage with many failures (checked on every add, not only on retry)."""
        overflow = max(len(self.pending) - self.MAX_PENDING, 0)
        dropped = self.pending[:overflow]
        self.pending = self.pending[overflow:]
        return [f"{p.key}: dropped, more than {self.MAX_PENDING} alerts waiting" for p in dropped]


def clock() -> float:
    """Epoch seconds (a seam the retry tests move forward)."""
    return time.time()


def backoff(attempts: int, cfg: AlertSettings) -> float:
    """Seconds before the next try after `attempts` failed ones: 60, 120, 240 … up to the cap."""
    return float(min(cfg.retry_max_seconds, 60 * 2 ** (attempts - 1)))
