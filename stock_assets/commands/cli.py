"""The `stock-assets` command: database lifecycle, tool environment, and the demo."""

from __future__ import annotations

import datetime as dt
import re
import signal
import sys
from pathlib import Path

import click

from stock_assets.runtime import postgres
from stock_assets.runtime.state import export_lines, prepare
from stock_assets.settings import load_settings


class _Commands(click.Group):
    """A command that fails (an error, Ctrl-C, SIGTERM) stops the embedded Postgres servers it
    started; one that succeeds leaves them for the next command (`db stop` stops them)."""

    def invoke(self, ctx: click.Context):
        previous = signal.getsignal(signal.SIGTERM)
        if previous in (signal.SIG_DFL, None):  # SIGTERM unwinds like Ctrl-C, through finally
            signal.signal(signal.SIGTERM, _terminated)
        try:
            return super().invoke(ctx)
        except BaseException as exc:
            if not (isinstance(exc, SystemExit) and exc.code in (0, None)):
                for pgdata in postgres.stop_started():
                    click.echo(
                        f"stopped the embedded Postgres this command started ({pgdata})",
                        err=True,
                    )
            raise


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt


@click.group(cls=_Commands, help="stock_assets: daily stock predictions as a Dagster asset graph.")
def main() -> None:
    pass


@main.group(help="The Postgres server (embedded unless STOCK_ASSETS_POSTGRES_URL is set).")
def db() -> None:
    pass


class Day(click.ParamType):
    """A calendar date written YYYY-MM-DD; a wrong one is a one-line usage error saying why."""

    name = "YYYY-MM-DD"

    def convert(self, value, param, ctx) -> dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value).strip())
        except ValueError as exc:
            why = (
                str(exc)
                if re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(value).strip())
                else "expected YYYY-MM-DD"
            )
            self.fail(f"{value!r} is not a date: {why}", param, ctx)


DAY = Day()


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


@main.command(
    help="The whole loop, offline, on the bundled sample data (^GSPC, ^IXIC since 1999) in the "
    "current state folder: backfill raw_prices, train a model with cutoff 2017-12-29 (Optuna, "
    "PyTorch, MLflow) and promote it if it beats naive, then replay the last 60 sessions up to "
    "--end day by day (predict, score, retrain when the sensor asks) and summarize. A second "
    "run reuses the state."
)
@click.option(
    "--end", type=DAY, default="2018-12-31", show_default=True, help="Last session to ingest."
)
def demo(end: dt.date) -> None:
    from stock_assets.commands.demo import run_demo
    from stock_assets.market.sources import SampleSource

    last = SampleSource().data_end
    if end > last:  # before anything starts: the source can never fill those sessions
        raise click.BadParameter(
            f"{end} is after the sample data's last day, {last}", param_hint="--end"
        )

    try:
        run_demo(end=str(end))
    except postgres.DatabaseUnavailable as exc:
        _fail(str(exc))


@main.command(help="Serve the prediction API and dashboard (uvicorn) on the current state.")
@click.option("--host", default=None, help="Bind address [STOCK_ASSETS_API_HOST, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [STOCK_ASSETS_API_PORT, 8000].")
@click.option("--log-level", default="info", show_default=True)
def api(host: str | None, port: int | None, log_level: str) -> None:
    import uvicorn

    try:
        settings = load_settings()
        prepare(settings)  # the same state as every other command
    except (ValueError, postgres.DatabaseUnavailable) as exc:
        _fail(str(exc))
    host, port = host or settings.api.host, port or settings.api.port
    click.echo(f"dashboard  http://{host}:{port}/    API docs  http://{host}:{port}/docs")
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        loop="uvloop",
        http="httptools",
    )


@main.command(help="The whole local stack: Postgres, MLflow UI, dagster dev and the API.")
@click.option("--dagster-port", type=int, default=3000, show_default=True)
@click.option("--mlflow-port", type=int, default=5000, show_default=True)
@click.option("--api-port", type=int, default=8000, show_default=True)
def dev(dagster_port: int, mlflow_port: int, api_port: int) -> None:
    from stock_assets.commands.devstack import ports_in_use, run_dev

    ports = {"dagster": dagster_port, "mlflow": mlflow_port, "api": api_port}
    taken = ports_in_use(ports)
    if taken:
        raise click.UsageError(
            f"{', '.join(taken)} already in use: stop what holds it or pass another port"
        )
    try:
        code = run_dev(load_settings(), ports, click.echo)
    except postgres.DatabaseUnavailable as exc:
        _fail(str(exc))
    sys.exit(code)


@main.command(
    "mlflow-server",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    help="The MLflow tracking server with authentication (deployment): writes the auth config "
    "from the environment, creates the platform's and the API's users, then runs `mlflow server "
    "--app-name basic-auth ARGS`.",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def mlflow_server(args: tuple[str, ...]) -> None:
    import os

    from stock_assets.runtime.mlflow_auth import (
        AuthSetup,
        ensure_users,
        server_command,
        write_auth_config,
    )

    try:
        setup = AuthSetup.from_env()
        for line in ensure_users(setup, os.environ.get("MLFLOW_BACKEND_STORE_URI")):
            click.echo(f"mlflow-server: {line}")
    except ValueError as exc:
        _fail(str(exc))
    except Exception as exc:  # the user store unreachable or refusing: say which, no traceback
        _fail(f"cannot prepare MLflow's user store: {type(exc).__name__}: {exc}")
    command, env = server_command(write_auth_config(setup), list(args))
    sys.stdout.flush()
    os.execvpe(command[0], command, env)


@main.command("tune-worker", help="Join a running retraining's Optuna study as an extra worker.")
@click.option("--dataset-run", "key", required=True, help="Dataset run key, e.g. 2018-12-31.")
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=None,
    help="The study's budget [STOCK_ASSETS_TRIALS, 20].",
)
def tune_worker(key: str, trials: int | None) -> None:
    from stock_assets.commands.tune_worker import run_worker

    try:
        prepare(load_settings())
        mine = run_worker(key, trials, click.echo)
    except (ValueError, LookupError, postgres.DatabaseUnavailable) as exc:
        _fail(str(exc))
    click.echo(f"this worker finished {mine} trial(s)")


@main.command("retrain", help="Add a dataset run and materialize the retraining group now.")
@click.option(
    "--cutoff",
    type=DAY,
    default=None,
    help="Last session the run may read (default: newest in raw_prices).",
)
@click.option("--reason", default="manual", show_default=True)
def retrain_cmd(cutoff, reason: str) -> None:
    from dagster import DagsterInstance

    from stock_assets.commands.retrain import retrain
    from stock_assets.definitions import build_definitions
    from stock_assets.lifecycle.retraining_lease import RetrainingBusy

    settings = load_settings()
    try:
        prepare(settings)
        outcome = retrain(
            build_definitions(settings),
            DagsterInstance.get(),
            cutoff=cutoff,
            reason=reason,
        )
    except (ValueError, RetrainingBusy, postgres.DatabaseUnavailable) as exc:
        _fail(str(exc))
    click.echo(f"\ndataset run   {outcome.dataset_run_id}   (Dagster run {outcome.run_id})")
    click.echo(f"candidate     version {outcome.candidate_version}")
    if outcome.check_passed is not None:
        verdict = "passed" if outcome.check_passed else "failed"
        click.echo(f"beats_production {verdict}: {outcome.check_reason}")
    else:
        click.echo(f"beats_production did not run: {outcome.failure}")
    click.echo(f"production -> version {outcome.production_version} ({outcome.production_kind})")
    if not outcome.ok:
        _fail(f"retraining failed: {outcome.failure}")


def _registry_conn():
    from stock_assets.lifecycle.registry import setup

    settings = load_settings()
    prepare(settings)
    setup(settings)
    return postgres.connect(postgres.ready_server(settings).for_db("stocks"))


def _echo_moved(moved) -> None:
    if moved.noop:
        click.echo(
            f"production: {moved.model_name} version {moved.new} already serves: nothing done"
        )
    else:
        click.echo(f"production: {moved.model_name} version {moved.previous} -> {moved.new}")


@main.command(help="Move the production alias to a registered version by hand.")
@click.option("--version", "version", required=True)
@click.option("--reason", default="manual promotion", show_default=True)
@click.option(
    "--expect",
    default=None,
    help="Refuse unless production is still this version (the one you looked at).",
)
def promote(version: str, reason: str, expect: str | None) -> None:
    from stock_assets.lifecycle.journal import ANY, move

    name = load_settings().retraining.model_name
    with _registry_conn() as conn:
        try:
            moved = move(conn, name, version, expected=expect or ANY, reason=reason, log=_note)
        except Exception as exc:
            _fail(f"cannot promote {name} version {version}: {exc}")
    _echo_moved(moved)


@main.command(help="Undo: move production back to the version the current one replaced.")
@click.option("--to", "to", default=None, help="Any version that held production before.")
@click.option("--reason", default="rollback", show_default=True)
def rollback(to: str | None, reason: str) -> None:
    from stock_assets.lifecycle.journal import rollback as undo

    name = load_settings().retraining.model_name
    with _registry_conn() as conn:
        try:
            moved = undo(conn, name, to, reason=reason, log=_note)
        except Exception as exc:
            _fail(f"cannot roll back {name}: {exc}")
    _echo_moved(moved)


@main.command(help="The history of the production alias: when, from, to, why, who.")
def promotions() -> None:
    from stock_assets.lifecycle.journal import history, reconcile

    name = load_settings().retraining.model_name
    with _registry_conn() as conn:
        reconcile(conn, name, _note)
        rows = history(conn, name)
    if rows.empty:
        click.echo(f"{name}: no promotion yet")
        return
    click.echo(
        f"{'when (UTC)':<20} {'from':>5} {'to':>5}  {'action':<9} {'who':<10} {'status':<9} reason"
    )
    for r in rows.itertuples():
        when = r.promoted_at.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S")
        was = "-" if r.previous_version is None else r.previous_version
        click.echo(
            f"{when:<20} {was:>5} {r.new_version:>5}  {r.action:<9} {r.actor:<10} "
            f"{r.status:<9} {r.reason}"
        )


@main.command(help="Trust a version registered before digests existed (checks it first!).")
@click.option("--version", "version", required=True)
def pin(version: str) -> None:
    from stock_assets.lifecycle.registry import pin_existing

    name = load_settings().retraining.model_name
    with _registry_conn() as conn:
        try:
            digests = pin_existing(conn, name, version)
        except Exception as exc:
            _fail(f"cannot pin {name} version {version}: {exc}")
    click.echo(f"{name} version {version} pinned: code sha256 {digests.code}")


def _note(line: str) -> None:
    click.echo(line, err=True)


@main.command(help="Re-ingest one ticker's history from the source (after a restatement).")
@click.option("--ticker", required=True)
@click.option("--start", type=DAY, required=True)
@click.option("--end", type=DAY, default=None, help="Default: newest.")
def restate(ticker: str, start, end) -> None:
    from stock_assets.commands.restate import restate as run
    from stock_assets.market.sources import SourceError, source_from_settings

    settings = load_settings()
    try:
        prepare(settings)
        done = run(settings, source_from_settings(settings), ticker, start, end)
    except (ValueError, SourceError, postgres.DatabaseUnavailable) as exc:
        _fail(str(exc))
    click.echo(
        f"{done.ticker}: {done.rows} rows and {done.actions} actions restated, "
        f"{done.first} … {done.last}, one transaction per session"
    )
    if done.affected_runs:
        click.echo(
            "dataset runs whose data changed (the next retraining uses the fixed data): "
            + ", ".join(done.affected_runs)
        )


@main.command(help="Replay the production loop over [--start, --end], session by session.")
@click.option("--start", type=DAY, required=True)
@click.option("--end", type=DAY, required=True)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State folder of the replay (default: replay-<start>-<end> beside the live state).",
)
@click.option("--in-place", is_flag=True, help="Replay into the current state (as the demo).")
def replay(start, end, home: Path | None, in_place: bool) -> None:
    from stock_assets.commands.replay import ReplayError, format_summary, replay_into

    if in_place and home is not None:
        _fail("--in-place and --home exclude each other")
    if home is not None and not home.expanduser().resolve().parent.is_dir():
        _fail(f"--home {home}: its parent folder does not exist")
    try:
        summary = replay_into(start, end, home=home, in_place=in_place)
    except KeyboardInterrupt:
        _fail("replay interrupted: run the same command again to resume where it stopped")
    except (ReplayError, postgres.DatabaseUnavailable) as exc:
        _fail(str(exc))
    click.echo(format_summary(summary))
