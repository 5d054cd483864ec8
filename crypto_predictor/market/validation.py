"""Check candles before they are stored; every decision is reported, none is silent.

- exact duplicates are dropped;
- conflicting duplicates (same open time, different values) keep the last row
  received (a provider's later answer is its correction) and are listed;
- impossible candles (missing, infinite or non-positive prices, infinite or negative volumes,
  high below the body, ...) are rejected with a reason;
- extreme outliers are flagged, never altered (published values stay as published);
- gaps (missing intervals) are listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crypto_predictor.market.frames import CANDLE_COLUMNS
from crypto_predictor.symbols import INTERVALS_MS
from crypto_predictor.timeutil import epoch_ms

# A wick reaching 50% beyond the body, or a 40% move within or between candles, is flagged.
WICK_RATIO_LIMIT = 1.5
MOVE_LIMIT = np.log(1.4)


@dataclass
class ValidationReport:
    received: int = 0
    exact_duplicates: int = 0
    conflicting_duplicates: list = field(default_factory=list)  # open times
    rejected: dict = field(default_factory=dict)  # reason -> count
    rejected_rows: pd.DataFrame | None = None  # the rows with a "reason" column
    outliers: list = field(default_factory=list)  # (open_time, why)
    gaps: list = field(default_factory=list)  # (first missing, last missing, count)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def missing_candles(self) -> int:
        return sum(g[2] for g in self.gaps)


def _rejection_reasons(frame: pd.DataFrame, step_ms: int) -> pd.Series:
    """The first reason each row is impossible, or None."""
    o, h, lo, c, v = (frame[k] for k in ("open", "high", "low", "close", "volume"))
    checks = [
        ("missing open time", frame["open_time"].isna()),
        ("missing price", frame[["open", "high", "low", "close"]].isna().any(axis=1)),
        ("non-finite price", np.isinf(frame[["open", "high", "low", "close"]]).any(axis=1)),
        ("non-positive price", (frame[["open", "high", "low", "close"]] <= 0).any(axis=1)),
        ("high below max(open, close)", h < np.maximum(o, c)),
        ("low above min(open, close)", lo > np.minimum(o, c)),
        ("negative volume", v < 0),
        ("non-finite volume", np.isinf(frame[["volume", "quote_volume"]]).any(axis=1)),
        ("open time not aligned to interval",
         frame["open_time"].notna() & (epoch_ms(frame["open_time"].fillna(pd.Timestamp(0, tz="UTC"))) % step_ms != 0)),
    ]
    reasons = pd.Series([None] * len(frame), index=frame.index, dtype="object")
    for reason, mask in reversed(checks):  # reversed so the first check wins
        reasons[mask.fillna(False).to_numpy()] = reason
    return reasons


def _outliers(frame: pd.DataFrame) -> pd.Series:
    """Why each row looks extreme (None if it does not); later checks overwrite earlier ones."""
    o, h, lo, c = (frame[k] for k in ("open", "high", "low", "close"))
    body_hi, body_lo = np.maximum(o, c), np.minimum(o, c)
    checks = [
        ("close moved more than 40% from the previous close", np.log(c).diff().abs() > MOVE_LIMIT),
        ("open more than 40% away from the previous close", np.log(o / c.shift(1)).abs() > MOVE_LIMIT),
        ("open-to-close move of more than 40% within one candle", np.log(c / o).abs() > MOVE_LIMIT),
        ("low wick more than 1/3 below the body", body_lo / lo > WICK_RATIO_LIMIT),
        ("high wick more than 50% above the body", h / body_hi > WICK_RATIO_LIMIT),
    ]
    why = pd.Series([None] * len(frame), index=frame.index, dtype="object")
    for reason, mask in checks:
        why[mask.fillna(False).to_numpy()] = reason
    return why


def _gaps(times: pd.Series, step_ms: int) -> list:
    if len(times) < 2:
        return []
    ms = epoch_ms(times).to_numpy()
    diffs = np.diff(ms)
    gaps = []
    for i in np.flatnonzero(diffs > step_ms):
        missing = int(diffs[i] // step_ms) - 1
        first = pd.Timestamp(ms[i] + step_ms, unit="ms", tz="UTC")
        last = pd.Timestamp(ms[i + 1] - step_ms, unit="ms", tz="UTC")
        gaps.append((first, last, missing))
    return gaps


def validate(frame: pd.DataFrame, interval: str) -> tuple[pd.DataFrame, ValidationReport]:
    """Return (clean candles sorted by time with an ``outlier`` column, report)."""
    step_ms = INTERVALS_MS[interval]
    report = ValidationReport(received=len(frame))
    frame = frame[CANDLE_COLUMNS].reset_index(drop=True)

    exact = frame.duplicated(keep="first")
    report.exact_duplicates = int(exact.sum())
    frame = frame[~exact]
    conflicts = frame["open_time"].duplicated(keep=False) & frame["open_time"].notna()
    if conflicts.any():
        report.conflicting_duplicates = sorted(frame.loc[conflicts, "open_time"].unique())
        frame = frame[~frame["open_time"].duplicated(keep="last") | frame["open_time"].isna()]

    reasons = _rejection_reasons(frame, step_ms)
    bad = reasons.notna()
    if bad.any():
        rejected = frame[bad].assign(reason=reasons[bad])
        report.rejected_rows = rejected.reset_index(drop=True)
        report.rejected = rejected["reason"].value_counts().to_dict()
    clean = frame[~bad].sort_values("open_time").reset_index(drop=True)

    why = _outliers(clean)
    clean["outlier"] = why.notna()
    report.outliers = list(zip(clean.loc[clean["outlier"], "open_time"], why[why.notna()]))
    report.gaps = _gaps(clean["open_time"], step_ms)
    return clean, report
