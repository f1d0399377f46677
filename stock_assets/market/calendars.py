"""Exchange sessions: which weekdays the market was open. Pure, no Dagster.

The session table (days and closes) comes from exchange_calendars, built once a day per
machine and cached as plain arrays: building it cost every run process 0.3 s, importing the
library 0.4 s more.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

# exchange_calendars starts ~20 years back by default and raises before that: pass start.
CALENDAR_START = "1990-01-01"


@dataclass(frozen=True)
class _Table:
    sessions: np.ndarray  # datetime64[D], ascending
    closes: np.ndarray  # datetime64[ns], UTC, one per session (early closes included)
    tz: str


def _cache_file(exchange: str) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    # the library's holidays change with its version; its last session moves with the date
    key = f"{exchange}-{version('exchange_calendars')}-{CALENDAR_START}-{dt.date.today()}"
    return root / "stock_assets" / "calendars" / f"{key}.npz"


@lru_cache(maxsize=8)
def _table(exchange: str) -> _Table:
    path = _cache_file(exchange)
    try:
        with np.load(path, allow_pickle=False) as z:
            return _Table(z["sessions"], z["closes"], str(z["tz"]))
    except (OSError, ValueError, KeyError):
        pass  # missing or unreadable: build it
    import exchange_calendars as xcals

    try:
        cal = xcals.get_calendar(exchange, start=CALENDAR_START)
    except xcals.errors.InvalidCalendarName:
        raise ValueError(f"unknown exchange calendar {exchange!r}") from None
    table = _Table(
        cal.sessions.to_numpy().astype("datetime64[D]"),
        cal.closes.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(),
        str(cal.tz),
    )
    try:  # whole or not at all: written aside, then renamed
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f"{exchange}-", suffix=".npz", delete=False
        ) as tmp:
            np.savez(tmp, sessions=table.sessions, closes=table.closes, tz=np.array(table.tz))
        os.replace(tmp.name, path)
        for old in path.parent.glob(f"{exchange}-*.npz"):  # earlier days' tables, stray temps
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only home: build again next time
    return table


def _close(exchange: str, day: dt.date) -> pd.Timestamp:
    table = _table(exchange)
    i = int(np.searchsorted(table.sessions, np.datetime64(day, "D")))
    if i == len(table.sessions) or table.sessions[i] != np.datetime64(day, "D"):
        raise ValueError(f"{day} is not a {exchange} session")
    return pd.Timestamp(table.closes[i], tz="UTC")


def sessions_between(start: dt.date, end: dt.date, exchange: str = "XNYS") -> list[dt.date]:
    """Sessions in [start, end], both inclusive."""
    if end < start:
        return []
    days = _table(exchange).sessions
    lo = np.searchsorted(days, np.datetime64(start, "D"))
    hi = np.searchsorted(days, np.datetime64(end, "D"), side="right")
    return days[lo:hi].astype(object).tolist()


def is_session(day: dt.date, exchange: str = "XNYS") -> bool:
    return bool(sessions_between(day, day, exchange))


def previous_session(day: dt.date, exchange: str = "XNYS") -> dt.date | None:
    """The last session strictly before `day` (None before the calendar starts)."""
    back = sessions_between(day - dt.timedelta(days=14), day - dt.timedelta(days=1), exchange)
    return back[-1] if back else None


def last_closed_session(now: dt.datetime, exchange: str = "XNYS") -> dt.date | None:
    """The newest session whose close is at or before `now` (an aware datetime)."""
    moment = pd.Timestamp(now).tz_convert("UTC")
    for day in reversed(sessions_between(moment.date() - dt.timedelta(days=14), moment.date())):
        if _close(exchange, day) <= moment:
            return day
    return None


def sessions_among(keys: list[str], exchange: str = "XNYS") -> list[dt.date]:
    """The partition keys (YYYY-MM-DD) that are sessions of the exchange."""
    days = [dt.date.fromisoformat(k) for k in keys]
    open_days = set(sessions_between(min(days), max(days), exchange))
    return [d for d in days if d in open_days]


def next_sessions(days: list[dt.date], exchange: str = "XNYS") -> dict[dt.date, dt.date]:
    """T(D): the session after each D."""
    ahead = sessions_between(min(days), max(days) + dt.timedelta(days=14), exchange)
    return {d: next(s for s in ahead if s > d) for d in days}


class SessionNotClosed(ValueError):
    """A live source asked for a session before its close (plus the settle delay)."""


def available_at(day: dt.date, exchange: str, settle: dt.timedelta) -> dt.datetime | None:
    """When a session's bar is final: its close (early closes included) plus `settle`, in UTC.
    None for a day that is not a session."""
    if not is_session(day, exchange):
        return None
    close = _close(exchange, day)
    return (close + settle).to_pydatetime()


def require_closed(last: dt.date, exchange: str, settle: dt.timedelta, now: dt.datetime) -> None:
    """Raise when the newest session up to `last` has not closed and settled by `now`: a live
    source would hand over its intraday bar as if it were final."""
    for day in reversed(sessions_between(last - dt.timedelta(days=7), last, exchange)):
        ready = available_at(day, exchange, settle)
        if ready is not None and now < ready:
            local = ready.astimezone(ZoneInfo(_table(exchange).tz))
            raise SessionNotClosed(
                f"the {exchange} session of {day} has not closed and settled yet: its prices "
                f"are final from {local:%Y-%m-%d %H:%M %Z} ({ready:%H:%M} UTC; close + "
                f"{int(settle.total_seconds() // 60)} min, STOCK_ASSETS_SETTLE_MINUTES). "
                "Nothing was fetched or written"
            )
        return  # the newest session has settled, so every earlier one has too
