"""Exchange sessions: which weekdays the market was open. Pure, no Dagster."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

# exchange_calendars starts ~20 years back by default and raises before that: pass start.
CALENDAR_START = "1990-01-01"


@lru_cache(maxsize=8)
def _calendar(exchange: str) -> xcals.ExchangeCalendar:
    try:
        return xcals.get_calendar(exchange, start=CALENDAR_START)
    except xcals.errors.InvalidCalendarName:
        raise ValueError(f"unknown exchange calendar {exchange!r}") from None


def sessions_between(start: dt.date, end: dt.date, exchange: str = "XNYS") -> list[dt.date]:
    """Sessions in [start, end], both inclusive."""
    if end < start:
        return []
    cal = _calendar(exchange)
    first, last = cal.first_session.date(), cal.last_session.date()
    lo, hi = max(start, first), min(end, last)
    if hi < lo:
        return []
    return [ts.date() for ts in cal.sessions_in_range(pd.Timestamp(lo), pd.Timestamp(hi))]


def is_session(day: dt.date, exchange: str = "XNYS") -> bool:
    return bool(sessions_between(day, day, exchange))


def previous_session(day: dt.date, exchange: str = "XNYS") -> dt.date | None:
    """The last session strictly before `day` (None before the calendar starts)."""
    back = sessions_between(day - dt.timedelta(days=14), day - dt.timedelta(days=1), exchange)
    return back[-1] if back else None


def last_closed_session(now: dt.datetime, exchange: str = "XNYS") -> dt.date | None:
    """The newest session whose close is at or before `now` (an aware datetime)."""
    cal = _calendar(exchange)
    moment = pd.Timestamp(now).tz_convert("UTC")
    for day in reversed(sessions_between(moment.date() - dt.timedelta(days=14), moment.date())):
        if cal.session_close(pd.Timestamp(day)) <= moment:
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
    close = _calendar(exchange).session_close(pd.Timestamp(day))
    return (close + settle).to_pydatetime()


def require_closed(last: dt.date, exchange: str, settle: dt.timedelta, now: dt.datetime) -> None:
    """Raise when the newest session up to `last` has not closed and settled by `now`: a live
    source would hand over its intraday bar as if it were final."""
    for day in reversed(sessions_between(last - dt.timedelta(days=7), last, exchange)):
        ready = available_at(day, exchange, settle)
        if ready is not None and now < ready:
            local = ready.astimezone(_calendar(exchange).tz)
            raise SessionNotClosed(
                f"the {exchange} session of {day} has not closed and settled yet: its prices "
                f"are final from {local:%Y-%m-%d %H:%M %Z} ({ready:%H:%M} UTC; close + "
                f"{int(settle.total_seconds() // 60)} min, STOCK_ASSETS_SETTLE_MINUTES). "
                "Nothing was fetched or written"
            )
        return  # the newest session has settled, so every earlier one has too
