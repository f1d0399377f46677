"""`stock-assets dev`: the whole local stack — embedded Postgres, MLflow UI, `dagster dev`
(webserver + daemon) and the API — as child processes of one command.

Each child runs in its own process group, so stopping it reaches everything it started (the
webserver's code servers included); Ctrl-C or SIGTERM stops them all, then the embedded Postgres
if this command started it. Children log to `$STOCK_ASSETS_HOME/logs/<name>.log`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stock_assets.lifecycle.registry import configure
from stock_assets.runtime.postgres import embedded_status, embedded_stop
from stock_assets.runtime.state import prepare
from stock_assets.settings import Settings

BIN = Path(sys.executable).parent
STOP_SECONDS = 30
SLOW_SECONDS = 180  # a child not answering by then is reported once (it may still come up)
_DAGSTER_CHILD_DIED = re.compile(
    r"(dagster-\w+) process shut down unexpectedly with return code (-?\d+)"
)


@dataclass
class Child:
    name: str
    args: list[str]
    url: str
    probe: str
    process: subprocess.Popen | None = None
    ready: bool = False
    log: Path | None = field(default=None)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except Exception:
        return False


def children(settings: Settings, env: dict[str, str], ports: dict[str, int]) -> list[Child]:
    mlflow, dagster, api = ports["mlflow"], ports["dagster"], ports["api"]
    return [
        Child(
            "mlflow",
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                env["MLFLOW_TRACKING_URI"],
                "--serve-artifacts",
                "--artifacts-destination",
                str(settings.mlflow_artifacts),
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow),
                "--workers",
                "1",
            ],
            f"http://127.0.0.1:{mlflow}/",
            f"http://127.0.0.1:{mlflow}/health",
        ),
        Child(
            "dagster",
            [
                str(BIN / "dagster"),
                "dev",
                "-m",
                "stock_assets.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(dagster),
            ],
            f"http://127.0.0.1:{dagster}/",
            f"http://127.0.0.1:{dagster}/server_info",
        ),
        Child(
            "api",
            [str(BIN / "stock-assets"), "api", "--host", "127.0.0.1", "--port", str(api)],
            f"http://127.0.0.1:{api}/",
            f"http://127.0.0.1:{api}/health",
        ),
    ]


def ports_in_use(ports: dict[str, int], host: str = "127.0.0.1") -> list[str]:
    """Which of the stack's ports something else holds: checked before anything starts, because
    a webserver that cannot bind logs the error and keeps running, so the stack would wait
    forever on a URL that another program answers or nobody does."""
    taken = []
    for name, port in ports.items():
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                taken.append(f"{name} port {port}")
    return taken


def exit_reason(child: Child) -> str:
    """Why a child stopped, in one line. `dagster dev` exits 0 when its webserver or daemon dies
    (it logs the death and shuts down the rest), so its own code would read like success: the
    child's log says which process died and with what code."""
    code = child.process.returncode if child.process is not None else None
    if child.log is not None and child.log.exists():
        died = _DAGSTER_CHILD_DIED.findall(child.log.read_text(errors="replace"))
        if died:
            process, inner = died[-1]
            return f"{child.name}: {process} exited with {inner} ({child.name} stopped with {code})"
    return f"{child.name} exited with {code}"


def _default_sigint() -> None:
    # a parent started in the background ignores SIGINT, and children inherit that: undo it, or
    # the children would not stop on the SIGINT sent to them
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_groups(stack: list[Child], signum: int) -> None:
    for child in stack:
        if child.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signum)  # the group: what the child started too


def _stop_all(stack: list[Child]) -> None:
    """SIGINT every group at once, give them STOP_SECONDS together, then SIGKILL what is left."""
    _signal_groups(stack, signal.SIGINT)
    deadline = time.monotonic() + STOP_SECONDS
    for child in stack:
        if child.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(max(deadline - time.monotonic(), 0.1))
    _signal_groups(stack, signal.SIGKILL)  # a child that ignored SIGINT, or a grandchild
    for child in stack:
        if child.process is not None and child.process.poll() is None:
            child.process.wait(STOP_SECONDS)


def run_dev(settings: Settings, ports: dict[str, int], echo: Callable[[str], None]) -> int:
    """Start everything, report URLs and readiness, and stop everything on Ctrl-C/SIGTERM."""
    started_postgres = embedded_status(settings.pgdata) is None and not settings.postgres_url
    env = prepare(settings)
    # create MLflow's tables now: the MLflow server, the API and the code server would otherwise
    # race to create them on a fresh state
    configure(env["MLFLOW_TRACKING_URI"], settings.mlflow_artifacts)
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack = children(settings, env, ports)

    def terminate(signum, frame):  # SIGTERM behaves like Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    # started in the background, this process would inherit an ignored SIGINT: Ctrl-C and
    # `kill -INT` must always stop the stack
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    code = 0
    started = time.monotonic()
    slow_reported = False
    try:
        for child in stack:
            child.log = logs / f"{child.name}.log"
            child_env = {**os.environ, **env}
            if child.name == "dagster":
                # dagster dev hands its webserver a generated workspace file; an exported
                # DAGSTER_MODULE_NAME makes that webserver refuse the pair and hang silently
                child_env.pop("DAGSTER_MODULE_NAME", None)
            child.process = subprocess.Popen(
                child.args,
                env=child_env,
                stdout=child.log.open("w"),
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_default_sigint,
            )
        echo(f"postgres   {env['STOCK_ASSETS_DB_URL']}")
        for child in stack:
            echo(f"{child.name:<10} {child.url}   (log: {child.log})")
        echo("starting… Ctrl-C stops everything")
        while True:
            for child in stack:
                if child.process.poll() is not None:
                    echo(f"{exit_reason(child)}; see {child.log}")
                    code = 1
                    raise KeyboardInterrupt
                if not child.ready and _answers(child.probe):
                    child.ready = True
                    echo(f"{child.name:<10} ready")
            waiting = [child.name for child in stack if not child.ready]
            if waiting and not slow_reported and time.monotonic() - started > SLOW_SECONDS:
                slow_reported = True
                echo(
                    f"still waiting for {', '.join(waiting)} to answer after {SLOW_SECONDS} s; "
                    "see " + ", ".join(str(c.log) for c in stack if not c.ready)
                )
            time.sleep(1)
    except KeyboardInterrupt:
        echo("stopping…")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C waits for the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            _stop_all(stack)
            if started_postgres:
                embedded_stop(settings.pgdata)
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous)
        echo("stopped" + (" with the embedded Postgres it started" if started_postgres else ""))
    return code
