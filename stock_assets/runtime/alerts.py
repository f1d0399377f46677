"""Failure alerts by email (SMTP) and/or webhook (JSON POST). No Dagster here: the sensors in
`assets/alerting.py` decide *what* to say; this module delivers it.

With neither channel configured an alert is only logged, so a laptop needs no mail server. A
channel that fails does not stop the other; the error names every channel that failed.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any

from stock_assets.settings import AlertSettings

log = logging.getLogger("stock_assets.runtime.alerts")


class AlertDeliveryError(RuntimeError):
    """At least one configured channel could not deliver the alert."""


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


def deliver(alert: Alert, cfg: AlertSettings) -> list[str]:
    """Send `alert` on every configured channel; returns the channels that delivered it."""
    channels = []
    if cfg.smtp_host:
        channels.append(("email", _email))
    if cfg.webhook_url:
        channels.append(("webhook", _webhook))
    if not channels:
        log.warning("alert (no email or webhook configured): %s\n%s", alert.subject, alert.body)
        return []
    delivered, failed = [], []
    for name, send in channels:
        try:
            send(alert, cfg)
            delivered.append(name)
        except (OSError, smtplib.SMTPException, urllib.error.URLError) as exc:
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    if failed:
        raise AlertDeliveryError(
            f"alert {alert.subject!r} not delivered by "
            + "; ".join(failed)
            + (f" (delivered by {', '.join(delivered)})" if delivered else "")
        )
    return delivered
