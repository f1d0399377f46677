"""Typing mistakes on the command line: one clear line and exit code 2 (click's usage error),
never a traceback, and before anything starts; help that says what a command does."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "stock-assets"), *args],
        env={"PATH": f"{BIN}:/usr/bin:/bin", "STOCK_ASSETS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("demo", "--end", "notadate"), "'notadate' is not a date: expected YYYY-MM-DD"),
        (("demo", "--end", "2019-03-29"), "2019-03-29 is after the sample data's last day"),
        (("retrain", "--cutoff", "2018-02-30"), "'2018-02-30' is not a date: day is out of range"),
        (("replay", "--start", "2019-13-01", "--end", "2019-12-31"), "month must be in 1..12"),
        (("restate", "--ticker", "X", "--start", "yesterday"), "expected YYYY-MM-DD"),
        (("tune-worker", "--dataset-run", "2018-12-31", "--trials", "-3"), "x>=1"),
    ],
)
def test_a_typing_mistake_is_one_line_and_starts_nothing(args, said, tmp_path):
    done = _cli(*args, home=tmp_path)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "pgdata").exists()  # nothing was started


def test_demo_help_says_what_the_demo_does(tmp_path):
    shown = _cli("demo", "--help", home=tmp_path).stdout
    for words in ("offline", "sample", "backfill", "train", "replay", "--end"):
        assert words in shown, words


@pytest.mark.parametrize(
    ("args", "said", "state"),
    [
        (
            ("replay", "--start", "2019-01-02", "--end", "2019-01-31", "--home", "{tmp}/replay"),
            "outside the data it has",
            "replay",
        ),
        (("promote", "--version", "999"), "cannot promote", "live"),
    ],
)
def test_a_command_that_fails_stops_the_postgres_it_started(args, said, state, tmp_path):
    from stock_assets.runtime.postgres import embedded_status

    live = tmp_path / "live"
    done = _cli(*(a.format(tmp=tmp_path) for a in args), home=live)
    assert done.returncode == 1, done.stderr
    assert said in done.stderr, done.stderr[-2000:]
    assert "stopped the embedded Postgres this command started" in done.stderr
    home = tmp_path / "replay" if state == "replay" else live
    assert (home / "pgdata").exists()  # it had started one
    assert embedded_status(home / "pgdata") is None  # and left none running
    assert embedded_status(live / "pgdata") is None


def test_dev_refuses_a_port_in_use_before_starting_anything(tmp_path):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = _cli("dev", "--dagster-port", str(port), home=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"dagster port {port} already in use" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "pgdata").exists()


def test_dev_names_the_dagster_process_that_died_not_dagster_devs_zero(tmp_path):
    from stock_assets.commands.devstack import Child, exit_reason

    log = tmp_path / "dagster.log"
    log.write_text(  # what dagster dev 1.13 logs before it exits 0
        "2026-11-29 04:37:00 +0000 - dagster - ERROR - An unexpected exception has occurred\n"
        "Exception: dagster-webserver process shut down unexpectedly with return code 1\n"
    )
    done = subprocess.run([sys.executable, "-c", "raise SystemExit(0)"])
    child = Child("dagster", [], "", "", process=done, log=log)  # type: ignore[arg-type]
    said = exit_reason(child)
    assert said.startswith("dagster: dagster-webserver exited with 1"), said
    log.write_text("")
    assert exit_reason(child) == "dagster exited with 0"
