"""The `stock-assets` command: database lifecycle, tool environment, and the demo."""

from __future__ import annotations

import sys

import click

from stock_assets.runtime import postgres
from stock_assets.runtime.state import export_lines, prepare
from stock_assets.settings import load_settings


@click.group(help="stock_assets: daily stock predictions as a Dagster asset graph.")
def main() -> None:
    pass


@main.group(help="The Postgres server (embedded unless STOCK_ASSETS_POSTGRES_URL is set).")
def db() -> None:
    pass


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@db.command("start", help="Start the embedded server (harmless when it runs) and create the DBs.")
def db_start() -> None:
    settings = load_settings()
    try:
        server = postgres.ready_server(settings)
    except postgres.DatabaseUnavailable as exc:
        _fail(str(exc))
    where = "external" if settings.postgres_url else f"embedded in {settings.pgdata}"
    click.echo(f"Postgres ({where}) is up: {postgres.redact(server.for_db('stocks'))}")


@db.command("stop", help="Stop the embedded server; its data is kept.")
def db_stop() -> None:
    settings = load_settings()
    if settings.postgres_url:
        _fail("STOCK_ASSETS_POSTGRES_URL is set: that server is yours to stop")
    stopped = postgres.embedded_stop(settings.pgdata)
    click.echo("stopped" if stopped else f"not running ({settings.pgdata})")


@db.command("status", help="Say whether the server is up; exit 1 when it is not.")
def db_status() -> None:
    settings = load_settings()
    if settings.postgres_url:
        try:
            postgres.connect(postgres.ServerUrl(settings.postgres_url).for_db("postgres")).close()
        except postgres.DatabaseUnavailable as exc:
            _fail(str(exc))
        click.echo(f"external server reachable: {postgres.redact(settings.postgres_url)}")
        return
    url = postgres.embedded_status(settings.pgdata)
    if url is None:
        click.echo(f"embedded server not running ({settings.pgdata})")
        sys.exit(1)
    click.echo(f"embedded server running: {url}")


@main.command(help='Start what is needed and print exports: eval "$(stock-assets env)".')
def env() -> None:
    try:
        variables = prepare(load_settings())
    except postgres.DatabaseUnavailable as exc:
        _fail(str(exc))
    click.echo(export_lines(variables))


@main.command(help="Run the main job on the embedded default and the offline sample source.")
@click.option("--end", default="2018-12-31", show_default=True, help="Last partition to ingest.")
def demo(end: str) -> None:
    from stock_assets.demo import run_demo

    try:
        run_demo(end=end)
    except postgres.DatabaseUnavailable as exc:
        _fail(str(exc))
