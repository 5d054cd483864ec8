"""Times as this project writes them: tz-aware UTC timestamps, epoch milliseconds, ISO strings ending in Z."""

from __future__ import annotations

import datetime as _dt

import pandas as pd

from crypto_predictor.errors import InvalidInput


def to_utc(value) -> pd.Timestamp:
    """A timestamp (str, datetime, Timestamp, epoch ms int) as tz-aware UTC; naive means UTC."""
    ts = pd.Timestamp(value, unit="ms") if isinstance(value, (int, float)) else pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def to_ms(value) -> int:
    return int(to_utc(value).as_unit("ns").value // 1_000_000)


def epoch_ms(times: pd.Series) -> pd.Series:
    """Epoch milliseconds of a UTC datetime series, whatever its unit."""
    return times.dt.as_unit("ns").astype("int64") // 1_000_000


def utc(value) -> _dt.datetime | None:
    """A UTC-aware datetime (SQLite hands back naive values, which are UTC by construction)."""
    if value is None:
        return None
    # Fast paths (requests and the prediction log): our own ISO strings and aware timestamps.
    if type(value) is str and value.endswith("Z"):
        try:
            return _dt.datetime.fromisoformat(value[:-1]).replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            pass  # anything else pandas may still read
    elif type(value) is pd.Timestamp and value.tzinfo is not None and value.value >= 0:
        return value.tz_convert("UTC").to_pydatetime(warn=False)  # drops nanoseconds: a floor here
    return to_utc(value).floor("us").to_pydatetime()  # datetime has no nanoseconds


def iso(value) -> str | None:
    """``2021-10-01T00:00:00Z`` (None stays None): the one time format of API answers and logs."""
    value = utc(value)
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def utcnow_iso() -> str:
    """Now, to the second, as ``iso`` writes it."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(value, name: str) -> pd.Timestamp | None:
    """A user's ISO time as tz-aware UTC (naive means UTC), None when empty; InvalidInput if unreadable."""
    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name}: not an ISO date/time: {value!r} ({exc})") from None
    if ts is pd.NaT:
        raise InvalidInput(f"{name}: not an ISO date/time: {value!r}")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
