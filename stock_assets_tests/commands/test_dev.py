"""`stock-assets dev` as a process on a fresh state: the webserver's GraphQL lists the asset graph,
the API answers /health, MLflow serves artifacts over HTTP; SIGINT leaves no process behind."""

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from stock_assets.runtime.postgres import embedded_status
from stock_assets_tests.servers import BIN, free_port

READY_SECONDS = 300
GRAPH = "{ assetNodes { assetKey { path } } }"


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def dev_stack(tmp_path):
    home = tmp_path / "dev"
    ports = {"dagster": free_port(), "mlflow": free_port(), "api": free_port()}
    env = {**os.environ, "STOCK_ASSETS_HOME": str(home)}
    for name in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME", "STOCK_ASSETS_DB_URL"):
        env.pop(name, None)  # the command prepares its own state
    log = (tmp_path / "dev.log").open("w")
    process = subprocess.Popen(
        [
            str(BIN / "stock-assets"),
            "dev",
            "--dagster-port",
            str(ports["dagster"]),
            "--mlflow-port",
            str(ports["mlflow"]),
            "--api-port",
            str(ports["api"]),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield process, ports, home, tmp_path / "dev.log"
    if process.poll() is None:  # a failed test: still leave nothing behind
        process.send_signal(signal.SIGINT)
        process.wait(120)


def _wait_ready(process, ports, log: Path) -> list[str]:
    deadline = time.monotonic() + READY_SECONDS
    assets, health = None, None
    while time.monotonic() < deadline and (assets is None or health is None):
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if assets is None:
                answer = httpx.post(
                    f"http://127.0.0.1:{ports['dagster']}/graphql", json={"query": GRAPH}, timeout=5
                )
                nodes = answer.json()["data"]["assetNodes"]
                assets = sorted("/".join(n["assetKey"]["path"]) for n in nodes) or None
            if health is None:
                answer = httpx.get(f"http://127.0.0.1:{ports['api']}/health", timeout=5)
                health = answer.json() if answer.status_code == 200 else None
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            pass
        time.sleep(1)
    assert assets is not None and health is not None, log.read_text()[-3000:]
    assert health["database"] is True
    return assets


def test_dev_serves_the_whole_stack_and_sigint_leaves_nothing(dev_stack):
    process, ports, home, log = dev_stack
    assets = _wait_ready(process, ports, log)
    assert {"raw_prices", "daily_predictions", "candidate_model", "production_model"} <= set(assets)
    mlflow_ok = httpx.get(f"http://127.0.0.1:{ports['mlflow']}/health", timeout=10)
    assert mlflow_ok.status_code == 200
    output = log.read_text()
    for port in ports.values():
        assert f"http://127.0.0.1:{port}/" in output
    postgres_pid = int((home / "pgdata" / "postmaster.pid").read_text().split()[0])
    children = _descendants(process.pid)
    assert len(children) >= 4  # mlflow, dagster dev (+ webserver, daemon, code server), api

    process.send_signal(signal.SIGINT)
    assert process.wait(120) == 0, log.read_text()[-3000:]
    time.sleep(1)
    left = [p for p in children if _alive(p)]
    assert not left, [(p.pid, p.cmdline()) for p in left]
    assert not psutil.pid_exists(postgres_pid) or not _alive(psutil.Process(postgres_pid))
    assert embedded_status(home / "pgdata") is None  # it started Postgres, so it stopped it
    assert "stopped with the embedded Postgres it started" in log.read_text()
