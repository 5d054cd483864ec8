"""A HAR forecast of realised variance (Corsi 2009): the scale of the conformal intervals.

The variance of the next ``horizon`` rows (the sum of their squared log returns) is forecast in
logs from the realised variance per day over the last day, week and a long window, known at the
row's close: ``log V = c + a log RV_day + b log RV_week + d log RV_long``. Volatility has long
memory and mean-reverts, so the blend reacts to a shock without taking it for the new normal,
which an EWMA alone does (bench/bench_intervals.py: over the 20 core assets the EWMA scale
under-covered calm thirds, 0.730 at 24h, and over-covered wild ones, 0.862; HAR 0.751 / 0.843,
with a lower interval score at every timeframe).

The long window is 14 days on hourly bars (serving keeps 400 of them; 14 days measured the same
as 30) and 30 days on daily bars. The model is fitted by least squares on the rows before a given
end only, so a walk-forward fold never uses it on data it was fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from crypto_predictor.errors import InsufficientData, InvalidInput

DAY_WEEK = (1, 7)
MIN_FIT_ROWS = 200


def long_days(rows_per_day: int) -> int:
    return 14 if rows_per_day > 1 else 30


def _squared_returns(close) -> np.ndarray:
    close = np.asarray(close, dtype=float)
    if close.ndim != 1 or np.any(close <= 0):
        raise InvalidInput("close must be a 1-D array of positive prices")
    out = np.full(len(close), np.nan)
    out[1:] = np.diff(np.log(close)) ** 2
    return out


def _rolling_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Sum of the latest ``window`` values at each row; NaN unless all of them are known (cumulative
    sums: serving computes this for every new candle, and pandas' rolling costs 3x as much)."""
    known = np.isfinite(values)
    total = np.concatenate([[0.0], np.cumsum(np.where(known, values, 0.0))])
    missing = np.concatenate([[0], np.cumsum(~known)])
    out = np.full(len(values), np.nan)
    if len(values) >= window:
        ends = np.arange(window, len(values) + 1)
        sums = total[ends] - total[ends - window]
        out[window - 1:] = np.where(missing[ends] - missing[ends - window] == 0, sums, np.nan)
    return out


@dataclass(frozen=True)
class HarVolatility:
    coef: tuple  # (constant, day, week, long) on log realised variance
    floor: float  # added before every log (a zero-return day is not minus infinity)
    rows_per_day: int
    long_days: int
    smear: float = 1.0  # exp(E log V) underestimates E V: Duan's smearing factor, fitted with coef

    def components(self, close) -> np.ndarray:
        """Realised variance per day over the last day, week and long window, per row (NaN until known)."""
        r2 = _squared_returns(close)
        d = self.rows_per_day
        return np.column_stack([_rolling_sum(r2, days * d) / days for days in (*DAY_WEEK, self.long_days)])

    def _design(self, close) -> np.ndarray:
        comps = self.components(close)
        return np.column_stack([np.ones(len(comps)), np.log(comps + self.floor)])

    def scale(self, close) -> np.ndarray:
        """Forecast standard deviation of the log return over the horizon, per row (NaN while unknown)."""
        return np.sqrt(self.smear * np.exp(self._design(close) @ np.asarray(self.coef, dtype=float)))

    @classmethod
    def fit(cls, close, horizon: int, rows_per_day: int, end: int | None = None) -> "HarVolatility":
        """Least squares on ``close[:end]`` alone: rows whose next ``horizon`` returns lie before ``end``."""
        return cls.fit_pooled([(close, end)], horizon, rows_per_day)

    @classmethod
    def fit_pooled(cls, series, horizon: int, rows_per_day: int, long_window: int | None = None) -> "HarVolatility":
        """One fit over several (close, end) series (assets), each cut at its own ``end``;
        ``long_window``: days of the long component instead of ``long_days(rows_per_day)``."""
        horizon = max(int(horizon), 1)
        probe = cls((0.0, 0.0, 0.0, 0.0), 0.0, int(rows_per_day), long_window or long_days(int(rows_per_day)))
        comps, targets = [], []
        for close, end in series:
            close = np.asarray(close, dtype=float)[:None if end is None else max(0, int(end))]
            sums = _rolling_sum(_squared_returns(close), horizon)  # row t: returns t-h+1 .. t
            target = np.full(len(close), np.nan)
            target[:len(close) - horizon] = sums[horizon:]  # row t: the next h returns, t+1 .. t+h
            comp = probe.components(close)
            keep = np.isfinite(comp).all(axis=1) & np.isfinite(target)
            comps.append(comp[keep])
            targets.append(target[keep])
        comp, target = np.vstack(comps), np.concatenate(targets)
        if len(target) < MIN_FIT_ROWS:
            raise InsufficientData(f"HAR volatility needs {MIN_FIT_ROWS} rows with a realised target, got {len(target)}")
        floor = 1e-3 * float(np.mean(target))
        design = np.column_stack([np.ones(len(target)), np.log(comp + floor)])
        coef, *_ = np.linalg.lstsq(design, np.log(target + floor), rcond=None)
        coef = tuple(round(float(c), 10) for c in coef)
        smear = float(np.mean(target / np.exp(design @ np.asarray(coef))))
        return cls(coef, floor, probe.rows_per_day, probe.long_days, round(smear, 10))

    def to_state(self) -> dict:
        return {"coef": list(self.coef), "floor": self.floor, "rows_per_day": self.rows_per_day,
                "long_days": self.long_days, "smear": self.smear}

    @classmethod
    def from_state(cls, state: dict) -> "HarVolatility":
        try:
            coef = tuple(float(c) for c in state["coef"])
            out = cls(coef, float(state["floor"]), int(state["rows_per_day"]), int(state["long_days"]),
                      float(state["smear"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"unreadable HAR volatility state: {exc}") from None
        if (len(coef) != 4 or out.rows_per_day < 1 or out.long_days < 7 or not np.all(np.isfinite(coef))
                or not (math.isfinite(out.smear) and out.smear > 0)):
            raise InvalidInput("HAR volatility state needs 4 finite coefficients, rows_per_day >= 1, long_days >= 7 "
                               "and a positive smear")
        return out
