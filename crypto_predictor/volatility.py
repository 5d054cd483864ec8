"""A HAR forecast of realised variance (Corsi 2009): the scale of the conformal intervals.

The variance of the next ``horizon`` rows (the sum of their squared log returns) is forecast in
logs from the realised variance per day over the last day, week and a long window, known at the
row's close: ``log V = c + a log RV_day + b log RV_week + d log RV_long``. Volatility has long
memory and mean-reverts, so the blend reacts to a shock without taking it for the new normal,
which an EWMA alone does (bench/bench_intervals.py: over the 20 core assets the EWMA scale
under-covered calm thirds, 0.730 at 24h, and over-covered wild ones, 0.862; HAR 0.751 / 0.843,
with a lower interval score at every timeframe).

Bars' variance is measured two ways. ``return``: squared close-to-close log returns (the first
models, still read). ``range``: Parkinson's estimator from each bar's high and low, plus the
squared jump from the previous close to the open; it uses the path inside the bar and is a less
noisy measure of the same variance. On hourly bars the ``range`` models also take the last 1 and 6
hours (``lags``: volatility clusters within the day) and effects of the target hours' hour of the
day and of the weekend, averaged over the horizon (``season``: the US session is busier than the
Asian night, weekends calmer; over 24 hours the hours of the day even out and the weekend's share
of the horizon remains). Measured together, 20 core assets, naive point, over 2,000 scores:
interval score at 80 against ``baseline_quantile`` 0.943 -> 0.924 at 1h and 0.959 -> 0.952 at 24h
(bench_intervals, bench/README). Other designs measured no better at 1h (an effect per hour of the
week, short lags deseasonalised, more lags, a range-measured target, slopes summing to one, the
market's last hours: all 0.923-0.925, bench/README).

The long window is 14 days on hourly bars (serving keeps 400 of them; 14 days measured the same
as 30) and 30 days on daily bars. The model is fitted by least squares on the rows before a given
end only, so a walk-forward fold never uses it on data it was fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crypto_predictor.errors import InsufficientData, InvalidInput
from crypto_predictor.features import trusted_range

DAY_WEEK = (1, 7)
MIN_FIT_ROWS = 200
MEASURES = ("return", "range")
HOURLY_LAGS = (1, 6)  # rows of the short components on hourly bars
SEASON_EFFECTS = 24  # 23 hours of the day against the first, and the weekend
ROWS_PER_COEF = 40  # fewer fitting rows per coefficient and the lags and season are dropped (collinear, noisy)
MAX_PERSISTENCE = 1.5  # the fits measured 0.5-0.95 (sum of the log-variance slopes); above this one explodes
_PARKINSON = 1.0 / (4.0 * math.log(2.0))


def long_days(rows_per_day: int) -> int:
    return 14 if rows_per_day > 1 else 30


def _log_closes(close) -> np.ndarray:
    close = np.asarray(close, dtype=float)
    if close.ndim != 1 or np.any(close <= 0):
        raise InvalidInput("close must be a 1-D array of positive prices")
    return np.log(close)


def _squared_returns(close) -> np.ndarray:
    out = np.full(len(close), np.nan)
    out[1:] = np.diff(_log_closes(close)) ** 2
    return out


def _range_variance(bars: pd.DataFrame) -> np.ndarray:
    """Per bar: Parkinson's (log high/low)^2 / (4 ln 2) plus (log open / previous close)^2. Bars flagged
    ``outlier`` count only the move from the previous close (their wicks and open are not trusted)."""
    missing = [c for c in ("open", "high", "low", "close") if c not in getattr(bars, "columns", ())]
    if missing:
        raise InvalidInput(f"a range-based volatility needs bars with open, high, low and close (missing {missing})")
    o, hi, lo, c = (bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    hi, lo = trusted_range(bars, o, hi, lo, c)
    if "outlier" in bars.columns:
        o = np.where(bars["outlier"].fillna(False).to_numpy(dtype=bool), np.concatenate([c[:1], c[:-1]]), o)
    o, hi, lo, c = (_log_closes(v) for v in (o, hi, lo, c))
    jump = np.full(len(c), np.nan)
    jump[1:] = (o[1:] - c[:-1]) ** 2
    return _PARKINSON * (hi - lo) ** 2 + jump


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


def closes_of(bars) -> np.ndarray:
    """The closes of a candle frame, or the array of closes given."""
    return bars["close"].to_numpy(dtype=float) if isinstance(bars, pd.DataFrame) else np.asarray(bars, dtype=float)


@dataclass(frozen=True)
class HarVolatility:
    coef: tuple  # constant; log day, week, long; log of each lag; then the season's effects (log variance)
    floor: float  # added before every log (a zero-return day is not minus infinity)
    rows_per_day: int
    long_days: int
    smear: float = 1.0  # exp(E log V) underestimates E V: Duan's smearing factor, fitted with coef
    measure: str = "return"  # how a bar's variance is measured (MEASURES; module docstring)
    lags: tuple = ()  # rows of the short components
    season: bool = False  # effects of the target hours' hour of the day and weekend (hourly bars)
    season_hours: int = 1  # the target hours the season's indicators average over (the horizon)

    @property
    def n_coef(self) -> int:
        return 4 + len(self.lags) + (SEASON_EFFECTS if self.season else 0)

    def bar_variance(self, bars) -> np.ndarray:
        """Each bar's variance: squared log return, or the range estimator (``bars`` a frame of candles)."""
        if self.measure == "range":
            return _range_variance(bars)
        return _squared_returns(closes_of(bars))

    def components(self, bars) -> np.ndarray:
        """Realised variance per day over the last day, week and long window, then over each lag, per
        row (NaN until known)."""
        v = self.bar_variance(bars)
        d = self.rows_per_day
        long = [_rolling_sum(v, days * d) / days for days in (*DAY_WEEK, self.long_days)]
        return np.column_stack(long + [_rolling_sum(v, rows) * d / rows for rows in self.lags])

    def _season(self, bars, n: int) -> np.ndarray:
        """Centred indicators of the UTC hour of the day (the first hour dropped) and of the weekend,
        each averaged over a row's ``season_hours`` target hours: at 24 hours the hours of the day
        even out and the weekend's share of the horizon remains."""
        index = getattr(bars, "index", None)
        if not isinstance(index, pd.DatetimeIndex):
            raise InvalidInput("a seasonal volatility needs bars indexed by open time")
        first = index.as_unit("s").asi8 // 3600 + 1  # hours since 1970-01-01 (a Thursday) of the first target hour
        hour, weekend = np.zeros((n, 24)), np.zeros(n)
        for hours in first + np.arange(self.season_hours)[:, None]:
            hour[np.arange(n), hours % 24] += 1.0
            weekend += (hours // 24 + 3) % 7 >= 5  # Monday = 0: Saturday and Sunday
        return np.column_stack([hour[:, 1:] / self.season_hours - 1.0 / 24, weekend / self.season_hours - 2.0 / 7])

    def _design(self, bars) -> np.ndarray:
        comps = self.components(bars)
        parts = [np.ones((len(comps), 1)), np.log(comps + self.floor)]
        if self.season:
            parts.append(self._season(bars, len(comps)))
        return np.hstack(parts)

    def scale(self, bars) -> np.ndarray:
        """Forecast standard deviation of the log return over the horizon, per row (NaN while unknown).
        ``bars``: candles (a frame indexed by open time), or for ``return`` models without a season
        the closes alone."""
        return np.sqrt(self.smear * np.exp(self._design(bars) @ np.asarray(self.coef, dtype=float)))

    @classmethod
    def fit(cls, bars, horizon: int, rows_per_day: int, end: int | None = None, **settings) -> "HarVolatility":
        """Least squares on ``bars[:end]`` alone: rows whose next ``horizon`` returns lie before ``end``."""
        return cls.fit_pooled([(bars, end)], horizon, rows_per_day, **settings)

    @classmethod
    def for_bars(cls, rows_per_day: int) -> dict:
        """The settings new models use: range-measured; lags and season on hourly bars (module docstring)."""
        hourly = rows_per_day > 1
        return {"measure": "range", "lags": HOURLY_LAGS if hourly else (), "season": hourly}

    @classmethod
    def fit_pooled(cls, series, horizon: int, rows_per_day: int, long_window: int | None = None,
                   measure: str = "return", lags=(), season: bool = False) -> "HarVolatility":
        """One fit over several (bars, end) series (assets), each cut at its own ``end``;
        ``long_window``: days of the long component instead of ``long_days(rows_per_day)``; lags and
        season are dropped when there are fewer than ROWS_PER_COEF fitting rows per coefficient.
        The normal equations are summed series by series: a stacked design of every asset's hourly rows
        would take gigabytes. Raises InsufficientData for too few rows or a fit whose persistence is out
        of bounds."""
        horizon = max(int(horizon), 1)
        probe = cls((0.0,) * 4, 0.0, int(rows_per_day), long_window or long_days(int(rows_per_day)), 1.0,
                    measure, tuple(int(k) for k in lags), bool(season), horizon if season else 1)
        probe._check()
        series = [bars[:None if end is None else max(0, int(end))] for bars, end in series]
        targets = [probe._fit_rows(bars, horizon, with_season=False)[1] for bars in series]
        count = sum(len(t) for t in targets)
        if count < MIN_FIT_ROWS:
            raise InsufficientData(f"HAR volatility needs {MIN_FIT_ROWS} rows with a realised target, got {count}")
        if (probe.lags or probe.season) and count < ROWS_PER_COEF * probe.n_coef:
            return cls.fit_pooled([(bars, None) for bars in series], horizon, rows_per_day, long_window, probe.measure)
        floor = 1e-3 * float(sum(t.sum() for t in targets)) / count
        gram, moment = np.zeros((probe.n_coef, probe.n_coef)), np.zeros(probe.n_coef)
        for bars in series:
            design, target = probe._fit_design(bars, horizon, floor)
            gram += design.T @ design
            moment += design.T @ np.log(target + floor)
        coef, *_ = np.linalg.lstsq(gram, moment, rcond=None)
        coef = tuple(round(float(c), 10) for c in coef)
        persistence = sum(coef[1:4 + len(probe.lags)])
        if not 0 <= persistence <= MAX_PERSISTENCE:
            raise InsufficientData(f"HAR volatility fit is unstable (persistence {persistence:.2f}, outside "
                                   f"0-{MAX_PERSISTENCE}): too few or too uniform rows")
        ratio = 0.0
        for bars in series:
            design, target = probe._fit_design(bars, horizon, floor)
            ratio += float(np.sum(target / np.exp(design @ np.asarray(coef))))
        return cls(coef, floor, probe.rows_per_day, probe.long_days, round(ratio / count, 10), probe.measure,
                   probe.lags, probe.season, probe.season_hours)

    def _fit_rows(self, bars, horizon: int, with_season: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(components, then the season, of the rows whose next ``horizon`` returns lie in ``bars``; the
        realised variance of those returns)."""
        sums = _rolling_sum(_squared_returns(closes_of(bars)), horizon)  # row t: returns t-h+1 .. t
        target = np.full(len(sums), np.nan)
        target[:len(sums) - horizon] = sums[horizon:]  # row t: the next h returns, t+1 .. t+h
        comp = self.components(bars)
        keep = np.isfinite(comp).all(axis=1) & np.isfinite(target)
        parts = [comp[keep]] + ([self._season(bars, len(comp))[keep]] if self.season and with_season else [])
        return np.hstack(parts), target[keep]

    def _fit_design(self, bars, horizon: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
        """``_fit_rows`` as the regression reads them: a constant, the logs of the components, the season."""
        raw, target = self._fit_rows(bars, horizon)
        n_comp = 3 + len(self.lags)
        return np.hstack([np.ones((len(raw), 1)), np.log(raw[:, :n_comp] + floor), raw[:, n_comp:]]), target

    def _check(self) -> None:
        if self.measure not in MEASURES:
            raise InvalidInput(f"HAR volatility measure must be one of {', '.join(MEASURES)}, got {self.measure!r}")
        if any(k < 1 for k in self.lags) or (self.season and self.rows_per_day != 24) or self.season_hours < 1:
            raise InvalidInput("HAR lags must be >= 1 row, a season needs hourly bars and >= 1 hour")

    def to_state(self) -> dict:
        return {"coef": list(self.coef), "floor": self.floor, "rows_per_day": self.rows_per_day,
                "long_days": self.long_days, "smear": self.smear, "measure": self.measure,
                "lags": list(self.lags), "season": self.season, "season_hours": self.season_hours}

    @classmethod
    def from_state(cls, state: dict) -> "HarVolatility":
        """A stored model; states from before ``measure`` / ``lags`` / ``season`` mean the first models,
        and from before ``season_hours`` a season of the first target hour."""
        try:
            coef = tuple(float(c) for c in state["coef"])
            out = cls(coef, float(state["floor"]), int(state["rows_per_day"]), int(state["long_days"]),
                      float(state["smear"]), str(state.get("measure", "return")),
                      tuple(int(k) for k in state.get("lags", ())), bool(state.get("season", False)),
                      int(state.get("season_hours", 1)))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"unreadable HAR volatility state: {exc}") from None
        out._check()
        if (len(coef) != out.n_coef or out.rows_per_day < 1 or out.long_days < 7 or not np.all(np.isfinite(coef))
                or not (math.isfinite(out.smear) and out.smear > 0)):
            raise InvalidInput(f"HAR volatility state needs {out.n_coef} finite coefficients, rows_per_day >= 1, "
                               "long_days >= 7 and a positive smear")
        return out
