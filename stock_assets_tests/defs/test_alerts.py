"""Alert sensors against a real SMTP sink (aiosmtpd) and a real HTTP receiver, both on loopback,
fed by real failing Dagster runs on a real instance."""

import email
import json
import logging
import threading
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from dagster import (
    DagsterInstance,
    SkipReason,
    build_sensor_context,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.definitions import build_definitions
from stock_assets.defs.alerts import check_failure_alert, run_failure_alert
from stock_assets.defs.resources import AlertChannels
from stock_assets.market.sources import CsvSource
from stock_assets.runtime import alerts as alert_delivery
from stock_assets.runtime.alerts import Alert, AlertDeliveryError, Outbox, deliver
from stock_assets.settings import AlertSettings, load_settings
from stock_assets_tests.servers import free_port


class _Sink:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=default))
        return "250 OK"


@pytest.fixture
def smtp():
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), ready_timeout=60)
    controller.start()
    yield controller, sink
    controller.stop()


@pytest.fixture
def webhook():
    received: list[dict] = []
    state = {"status": 204, "fail_next": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            body = json.loads(self.rfile.read(length))
            if state["fail_next"] > 0:  # an outage: refused, not received
                state["fail_next"] -= 1
                self.send_response(503)
            else:
                received.append(body)
                self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received, state
    server.shutdown()
    server.server_close()


@pytest.fixture
def channels(smtp, webhook, monkeypatch):
    controller, sink = smtp
    url, received, state = webhook
    monkeypatch.setenv("STOCK_ASSETS_ALERT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("STOCK_ASSETS_ALERT_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("STOCK_ASSETS_ALERT_SMTP_STARTTLS", "false")
    monkeypatch.setenv("STOCK_ASSETS_ALERT_EMAIL_TO", "ops@example.com, oncall@example.com")
    monkeypatch.setenv("STOCK_ASSETS_ALERT_WEBHOOK_URL", url)
    return sink.messages, received, state


def _channels() -> AlertChannels:
    """The alert resource as the code location builds it, from the environment of the test."""
    return AlertChannels.of(AlertSettings.from_env())


def _bad_ohlc_run(tmp_path: Path, instance: DagsterInstance):
    """ingest_prices over a CSV whose 2024-01-04 bar has high < close: the bar is rejected, and
    with the only ticker missing that day the blocking tickers_complete check fails."""
    header = "Date,Open,High,Low,Close,Adj Close,Volume\n"
    rows = (
        "2024-01-02,10,11,9,10.5,10.5,100\n2024-01-03,10.5,11,10,10.8,10.8,100\n"
        "2024-01-04,10,10.2,10,10.9,10.9,100\n"
    )
    (tmp_path / "BAD.csv").write_text(header + rows)
    settings = load_settings().with_market(start_date="2024-01-02")
    job = build_definitions(settings, source=CsvSource(tmp_path)).resolve_job_def("ingest_prices")
    return job.execute_in_process(
        instance=instance,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: "2024-01-02",
            ASSET_PARTITION_RANGE_END_TAG: "2024-01-04",
        },
        raise_on_error=False,
    )


def _tick(sensor, instance: DagsterInstance, cursor: str | None):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"alerts": _channels()}
    )
    return sensor(context), context.cursor


def test_failed_run_is_mailed_and_posted(stocks_url, tmp_path, channels):
    mails, posts, _ = channels
    instance = DagsterInstance.ephemeral()
    _, cursor = _tick(run_failure_alert, instance, None)
    result = _bad_ohlc_run(tmp_path, instance)  # launched in this process, as the CLI does
    assert not result.success
    outcome, cursor = _tick(run_failure_alert, instance, cursor)
    assert "1 failed run(s) alerted" in outcome.skip_message
    assert len(mails) == 1 and len(posts) == 1
    mail = mails[0]
    assert mail["Subject"] == "[stock_assets] run of ingest_prices (2024-01-02…2024-01-04) failed"
    assert mail["To"] == "ops@example.com, oncall@example.com"
    assert result.run_id in mail.get_content()
    assert "tickers_complete" in mail.get_content()  # why: the blocking check's failure
    assert posts[0]["kind"] == "run_failure"
    assert posts[0]["details"]["run_id"] == result.run_id
    assert posts[0]["details"]["job"] == "ingest_prices"
    _tick(run_failure_alert, instance, cursor)
    assert len(mails) == 1 and len(posts) == 1  # once


def test_a_webhook_outage_delays_alerts_and_each_arrives_once(
    stocks_url, tmp_path, channels, monkeypatch
):
    """The webhook refuses twice, then answers: the failed checks and the failed run each reach
    it exactly once, after back-off, and the mail (which worked) is not sent again."""
    mails, posts, state = channels
    now = [1_000_000.0]
    monkeypatch.setattr(alert_delivery, "clock", lambda: now[0])
    instance = DagsterInstance.ephemeral()
    sensors = (check_failure_alert, run_failure_alert)
    cursors = {s: _tick(s, instance, None)[1] for s in sensors}
    result = _bad_ohlc_run(tmp_path, instance)
    state["fail_next"] = 3  # 2 checks + 1 run in the first round
    said = {}
    for s in sensors:
        said[s], cursors[s] = _tick(s, instance, cursors[s])
    assert "2 failed check(s) alerted; 2 alert(s) waiting" in said[check_failure_alert].skip_message
    assert "503" in said[check_failure_alert].skip_message
    assert len(mails) == 3 and posts == []
    state["fail_next"] = 3
    now[0] += 30  # before the back-off: nothing is tried
    for s in sensors:
        _tick(s, instance, cursors[s])
    assert state["fail_next"] == 3 and posts == []
    now[0] += 31  # past 60 s: tried again, refused again (back-off doubles)
    for s in sensors:
        said[s], cursors[s] = _tick(s, instance, cursors[s])
    assert state["fail_next"] == 0 and posts == []
    assert "attempt 2, retrying in 120 s" in said[run_failure_alert].skip_message
    now[0] += 121
    for s in sensors:
        said[s], cursors[s] = _tick(s, instance, cursors[s])
    assert said[check_failure_alert].skip_message == "no failed checks"
    assert sorted(p["details"].get("check", "run") for p in posts) == [
        "ohlc_consistent",
        "run",
        "tickers_complete",
    ]
    assert {p["details"]["run_id"] for p in posts} == {result.run_id}
    now[0] += 10_000
    for s in sensors:
        _tick(s, instance, cursors[s])
    assert len(posts) == 3 and len(mails) == 3  # each alert once per channel


def test_an_alert_no_channel_takes_is_dropped_loudly_after_the_give_up_time(channels, monkeypatch):
    _, posts, state = channels
    monkeypatch.setenv("STOCK_ASSETS_ALERT_GIVE_UP_HOURS", "1")
    monkeypatch.delenv("STOCK_ASSETS_ALERT_SMTP_HOST")
    cfg = AlertSettings.from_env()
    outbox = Outbox()
    state["fail_next"] = 100
    assert "retrying in 60 s" in outbox.send("k", Alert("run_failure", "s", "b"), cfg, now=0.0)
    said = outbox.retry_due(cfg, now=3600.0)
    assert outbox.pending == [] and "k: dropped after 2 attempts over 1 h" in said[0]
    assert posts == []


def test_failed_checks_are_alerted_once_from_the_first_tick_on(stocks_url, tmp_path, channels):
    mails, posts, _ = channels
    instance = DagsterInstance.ephemeral()
    first = build_sensor_context(instance=instance, resources={"alerts": _channels()})
    assert isinstance(check_failure_alert(first), SkipReason)
    assert json.loads(first.cursor)["pending"] == []
    result = _bad_ohlc_run(tmp_path, instance)
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [e.check_name for e in failed] == ["ohlc_consistent", "tickers_complete"]
    second = build_sensor_context(
        instance=instance, cursor=first.cursor, resources={"alerts": _channels()}
    )
    outcome = check_failure_alert(second)
    assert "2 failed check(s) alerted" in outcome.skip_message
    warn, error = sorted(mails, key=lambda m: m["Subject"], reverse=True)
    assert warn["Subject"].startswith("[stock_assets] WARN check raw_prices.ohlc_consistent failed")
    assert "high < max(open, close)" in warn.get_content()
    assert error["Subject"].startswith(
        "[stock_assets] ERROR check raw_prices.tickers_complete failed"
    )
    assert "rejected: high < max(open, close)" in error.get_content()
    assert {p["details"]["check"] for p in posts} == {"ohlc_consistent", "tickers_complete"}
    assert {p["kind"] for p in posts} == {"check_failure"}
    assert {p["details"]["run_id"] for p in posts} == {result.run_id}
    third = build_sensor_context(
        instance=instance, cursor=second.cursor, resources={"alerts": _channels()}
    )
    check_failure_alert(third)
    assert len(mails) == 2 and len(posts) == 2  # nothing new: nothing resent


def test_without_channels_an_alert_is_only_logged(monkeypatch, caplog):
    for name in ("STOCK_ASSETS_ALERT_SMTP_HOST", "STOCK_ASSETS_ALERT_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level(logging.WARNING, logger="stock_assets.runtime.alerts"):
        assert deliver(Alert("run_failure", "subject X", "body Y"), AlertSettings.from_env()) == []
    assert "no email or webhook configured" in caplog.text and "subject X" in caplog.text


def test_a_failing_channel_is_named_and_the_other_still_delivers(channels):
    mails, posts, state = channels
    state["status"] = 500
    with pytest.raises(
        AlertDeliveryError, match=r"not delivered by webhook: HTTPError.*500"
    ) as err:
        deliver(Alert("run_failure", "subject Z", "body"), AlertSettings.from_env())
    assert "(delivered by email)" in str(err.value)
    assert [m["Subject"] for m in mails] == ["subject Z"]  # email went out
    assert [p["subject"] for p in posts] == ["subject Z"]  # the receiver got it, answered 500


def test_smtp_host_without_recipients_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("STOCK_ASSETS_ALERT_SMTP_HOST", "127.0.0.1")
    monkeypatch.delenv("STOCK_ASSETS_ALERT_EMAIL_TO", raising=False)
    with pytest.raises(ValueError, match="STOCK_ASSETS_ALERT_EMAIL_TO is empty"):
        AlertSettings.from_env()


def test_the_smtp_password_reaches_dagster_as_an_env_var_not_a_value(monkeypatch):
    from dagster import EnvVar, build_resources

    monkeypatch.setenv("STOCK_ASSETS_ALERT_SMTP_PASSWORD", "s3cret")
    channels = build_definitions().resources["alerts"]
    assert isinstance(channels.smtp_password, EnvVar)  # config holds the name, not the value
    assert channels.smtp_password.env_var_name == "STOCK_ASSETS_ALERT_SMTP_PASSWORD"
    with build_resources({"alerts": channels}) as resources:
        assert resources.alerts.settings().smtp_password == "s3cret"  # resolved when used


def test_the_outbox_never_holds_more_than_its_cap_even_within_one_tick(channels, monkeypatch):
    """A long outage with many new failures in one tick: the cursor stays bounded, and what is
    dropped is named."""
    _, _, state = channels
    monkeypatch.delenv("STOCK_ASSETS_ALERT_SMTP_HOST")
    monkeypatch.setattr(Outbox, "MAX_PENDING", 3)
    cfg = AlertSettings.from_env()
    outbox = Outbox()
    state["fail_next"] = 100
    said = [outbox.send(f"k{n}", Alert("run_failure", "s", "b"), cfg, now=0.0) for n in range(5)]
    assert [p.key for p in outbox.pending] == ["k2", "k3", "k4"]
    assert "k0: dropped, more than 3 alerts waiting" in said[3]
    assert "k1: dropped, more than 3 alerts waiting" in said[4]
