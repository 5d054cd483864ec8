"""Prediction intervals, learnt from out-of-sample errors only.

Intervals (rolling split conformal)
    For a prediction made at row t, the 80% interval is ``prediction + [q_lo, q_hi]`` where the
    offsets are finite-sample conformal quantiles of the errors (realised minus predicted) of the
    latest ``window`` earlier predictions whose outcome was ALREADY KNOWN at t: the error of the
    prediction made at row s becomes known at row s + horizon, so it is used only when
    s + horizon <= t. A trailing window follows volatility regimes; a quantile fitted once goes
    stale (BTCUSDT 1h: 80% quantiles fitted on 90 days and applied to the next two months
    covered between 71% and 91% depending on the start date in 2021; a trailing 720-row window
    covered 80.0% / 94.9% over 2021-01..09).
    Rows with fewer than ``min_history`` known errors get no interval (NaN); evaluation excludes
    them from coverage and reports how many there were.

    Volatility normalisation (``vol_span``): errors are divided by a causal volatility estimate
    known at their own prediction time (``causal_volatility``: EWMA of squared hourly log
    returns) and the interval is the quantile times the volatility now, so it widens as soon as
    the market gets agitated instead of 30 days later. Measured on BTCUSDT/ETHUSDT 2021-01..09
    (naive and ridge forecasts, window 720): at 1h the spread of weekly 80% coverage fell from
    SD 0.10 to 0.03 (the binomial floor for 168 rows) with the same overall coverage (0.80 /
    0.95) and mean width within +4% / -1%; at 24h (span 72) the spread halved (0.15 -> 0.08)
    for +5% / +17% mean width. At 7d and 30d it widened intervals without stabilising them.
    ``RollingConformal.for_horizon`` therefore normalises up to 24 rows and uses
    window = max(720, 12 * horizon) (720 rows under-covered the 7d 95% band: 0.89). 30-day
    intervals stay unreliable (4 years of data hold ~50 independent 30-day outcomes; block
    coverage SD ~0.28).
    HAR normalisation (``har``, crypto_predictor/volatility.py): training now scales every
    timeframe by a HAR forecast of realised variance fitted before the first test fold (pooled over
    the assets in global trainings), which measured sharper and more even across volatility thirds
    than the EWMA (bench/bench_intervals.py, README "Intervals against simple baselines"), over a
    window of the trailing 2,000 hourly or 720 daily scores (training/scoring.HAR_WINDOW); the EWMA
    (or none, at 30d) remains in bundles trained before it and for series too short to fit one. Its
    newer models read each bar's high and low, so ``scale`` takes candles rather than closes.

Direction confidence lives in crypto_predictor/confidence.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from crypto_predictor.errors import InvalidInput
from crypto_predictor.volatility import HarVolatility, closes_of

DEFAULT_LEVELS = (0.8, 0.95)
# Longest horizon (rows) that ``for_horizon`` normalises by the EWMA: 1h and 24h on hourly rows, 7d
# (7 daily rows); 30d (30 daily rows) stays unnormalised.
NORMALISE_MAX_HORIZON = 24


def level_key(level: float) -> str:
    """0.8 -> "80": the suffix used in lower80 / upper80 / coverage_80."""
    pct = level * 100
    return str(int(round(pct))) if abs(pct - round(pct)) < 1e-9 else f"{pct:g}".replace(".", "_")


def _check_levels(levels) -> tuple[float, ...]:
    levels = tuple(float(v) for v in levels)
    if not levels or any(not 0 < v < 1 for v in levels):
        raise InvalidInput(f"interval levels must lie strictly between 0 and 1, got {levels}")
    return levels


def _kth(sorted_vals: np.ndarray, k: int) -> float:
    """k-th smallest (1-based) of sorted values, +inf / -inf beyond either end."""
    if k > len(sorted_vals):
        return math.inf
    if k < 1:
        return -math.inf
    return float(sorted_vals[k - 1])


def _symmetric_offsets(abs_scores: np.ndarray, levels) -> dict[float, tuple[float, float]]:
    """+-q per level, q the ceil((n+1)*level)-th smallest of finite |scores| (by partition, not a sort)."""
    n = len(abs_scores)
    ks = {lv: math.ceil((n + 1) * lv - 1e-9) for lv in levels}
    inside = sorted({k - 1 for k in ks.values() if 1 <= k <= n})
    part = np.partition(abs_scores, inside) if inside else abs_scores
    return {lv: (-_kth(part, k), _kth(part, k)) for lv, k in ks.items()}


def conformal_offsets(residuals, levels=DEFAULT_LEVELS, symmetric: bool = True) -> dict[float, tuple[float, float]]:
    """Finite-sample conformal (lower, upper) offsets per level from realised residuals.

    Symmetric: +-q with q the ceil((n+1)*level)-th smallest |residual|. Asymmetric: the
    floor((n+1)*a/2)-th and ceil((n+1)*(1-a/2))-th smallest residuals, a = 1 - level.
    Too few residuals for a level gives infinite offsets (the guarantee cannot be met).
    """
    levels = _check_levels(levels)
    r = np.asarray(residuals, dtype=float)
    r = r[np.isfinite(r)]
    if symmetric:
        return _symmetric_offsets(np.abs(r), levels)
    n = len(r)
    srt = np.sort(r)
    out = {}
    for level in levels:
        a = 1.0 - level
        out[level] = (_kth(srt, math.floor((n + 1) * a / 2 + 1e-9)), _kth(srt, math.ceil((n + 1) * (1 - a / 2) - 1e-9)))
    return out


def causal_volatility(close, horizon: int = 1, span: int = 24, min_periods: int = 12) -> np.ndarray:
    """Volatility of the log return over ``horizon`` rows, known at each row's close.

    EWMA of squared one-row log returns up to and including row t (no look-ahead), scaled by
    sqrt(horizon). The first ``min_periods`` rows are NaN.
    """
    close = np.asarray(close, dtype=float)
    if close.ndim != 1 or np.any(close <= 0):
        raise InvalidInput("close must be a 1-D array of positive prices")
    rets = pd.Series(np.log(close)).diff()
    var = (rets**2).ewm(span=span, min_periods=min_periods, adjust=True).mean()
    return np.sqrt(var.to_numpy() * max(int(horizon), 1))


def rolling_intervals(res_pos, residuals, query_pos, query_pred, horizon: int, window: int = 720,
                      levels=DEFAULT_LEVELS, min_history: int = 100, symmetric: bool = True,
                      res_scale=None, query_scale=None) -> dict[str, np.ndarray]:
    """Causal conformal intervals for predictions at ``query_pos`` from a residual history.

    ``res_pos``: row positions at which the residual's predictions were made (so residual s is
    known from s + horizon on). For each query row t only residuals with pos + horizon <= t are
    used, the latest ``window`` of them. Returns lower<L>/upper<L> arrays per level, ``n_history``
    (known residuals used) and ``error_scale`` (mean |error| of that window, the typical error
    used to score direction strength). Rows with fewer than ``min_history`` get NaN.
    """
    levels = _check_levels(levels)
    if window < 1 or min_history < 1 or horizon < 0:
        raise InvalidInput("window and min_history must be >= 1 and horizon >= 0")
    rpos = np.asarray(res_pos, dtype=np.int64)
    r = np.asarray(residuals, dtype=float)
    qpos = np.asarray(query_pos, dtype=np.int64)
    qpred = np.asarray(query_pred, dtype=float)
    if rpos.shape != r.shape or qpos.shape != qpred.shape:
        raise InvalidInput("positions and values must have matching lengths")
    normalised = res_scale is not None or query_scale is not None
    if normalised:
        if res_scale is None or query_scale is None:
            raise InvalidInput("normalised conformal needs both res_scale and query_scale")
        rs = np.asarray(res_scale, dtype=float)
        qs = np.asarray(query_scale, dtype=float)
        if rs.shape != r.shape or qs.shape != qpred.shape:
            raise InvalidInput("scales must match their residuals / predictions")
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.where(rs > 0, r / rs, np.nan)
    else:
        qs = np.ones_like(qpred)
        scores = r
    order = np.argsort(rpos, kind="stable")
    known_at = rpos[order] + int(horizon)
    scores = scores[order]
    n_known = np.searchsorted(known_at, qpos, side="right")

    out = {f"{side}{level_key(lv)}": np.full(len(qpos), np.nan) for lv in levels for side in ("lower", "upper")}
    n_hist = np.zeros(len(qpos), dtype=np.int64)
    err_scale = np.full(len(qpos), np.nan)
    bounds = {lv: (out[f"lower{level_key(lv)}"], out[f"upper{level_key(lv)}"]) for lv in levels}
    all_finite = bool(np.isfinite(scores).all())
    for i, k in enumerate(n_known):
        win = scores[max(0, k - window):k]
        if not all_finite:
            win = win[np.isfinite(win)]
        n_hist[i] = len(win)
        if len(win) < min_history or not (np.isfinite(qs[i]) and np.isfinite(qpred[i])):
            continue
        abs_win = np.abs(win)
        err_scale[i] = float(np.mean(abs_win)) * qs[i]
        offsets = _symmetric_offsets(abs_win, levels) if symmetric else conformal_offsets(win, levels, False)
        for lv, (lo, hi) in offsets.items():
            lower, upper = bounds[lv]
            lower[i] = qpred[i] + lo * qs[i]
            upper[i] = qpred[i] + hi * qs[i]
    out["n_history"] = n_hist
    out["error_scale"] = err_scale
    return out


class RollingConformal:
    """Conformal intervals from a trailing window of realised out-of-sample errors.

    ``window`` and ``min_history`` count rows (hours for hourly candles); ``horizon`` is the
    target horizon in rows, which sets how long an error takes to become known.
    """

    def __init__(self, window: int = 720, horizon: int = 1, levels=DEFAULT_LEVELS,
                 min_history: int = 100, symmetric: bool = True, vol_span: int | None = None,
                 har: dict | None = None, scale_power: float = 1.0):
        if int(window) < 1 or int(horizon) < 0 or int(min_history) < 1:
            raise InvalidInput("window and min_history must be >= 1 and horizon >= 0")
        if not 0 < float(scale_power) <= 2:
            raise InvalidInput(f"scale_power must be in (0, 2], got {scale_power!r}")
        if vol_span is not None and int(vol_span) < 2:
            raise InvalidInput("vol_span must be >= 2 (or None for unnormalised intervals)")
        if vol_span is not None and har is not None:
            raise InvalidInput("normalise by vol_span (EWMA) or by har, not both")
        self.window = int(window)
        self.horizon = int(horizon)
        self.levels = _check_levels(levels)
        self.min_history = min(int(min_history), self.window)
        self.symmetric = bool(symmetric)
        self.vol_span = None if vol_span is None else int(vol_span)
        self.har = None if har is None else HarVolatility.from_state(har)
        # Scores are divided by volatility ** scale_power: below 1 a forecast volatility moves the intervals
        # less than in proportion (bench_intervals --power: at 24h 0.5 evens out the volatility thirds).
        self.scale_power = float(scale_power)

    @property
    def normalised(self) -> bool:
        """Scores are divided by a volatility scale (EWMA or HAR); callers pass scales."""
        return self.vol_span is not None or self.har is not None

    @classmethod
    def for_horizon(cls, horizon: int, normalise: bool = True, **kwargs) -> "RollingConformal":
        """Settings measured on BTC/ETH 2019-2021 (see module docstring).

        window = max(720, 12 * horizon) rows; vol-normalised with span max(24, 3 * horizon) for
        horizons up to 24 rows, unnormalised beyond (normalisation did not help at 7d / 30d).
        """
        horizon = int(horizon)
        span = max(24, 3 * horizon) if normalise and horizon <= NORMALISE_MAX_HORIZON else None
        return cls(**{"window": max(720, 12 * horizon), "horizon": horizon, "vol_span": span, **kwargs})

    def scale(self, bars) -> np.ndarray | None:
        """What the scores are divided by, per row of contiguous candles (a frame indexed by open time;
        the closes alone do for the EWMA and the first HAR models): the causal volatility **
        ``scale_power`` (None when unnormalised)."""
        if self.har is not None:
            vol = self.har.scale(bars)
        elif self.vol_span is None:
            return None
        else:
            vol = causal_volatility(closes_of(bars), self.horizon, self.vol_span, min_periods=min(self.vol_span, 48))
        return vol if self.scale_power == 1.0 else vol ** self.scale_power

    def volatility(self, scale: float) -> float:
        """The volatility (SD of the horizon's log return) behind one value of ``scale``."""
        return scale if self.scale_power == 1.0 else scale ** (1.0 / self.scale_power)

    def _check_scale(self, scale) -> None:
        if self.normalised and scale is None:
            raise InvalidInput("this conformal is volatility-normalised: pass scale (see RollingConformal.scale(close))")

    def batch(self, positions, y_true, y_pred, scale=None) -> dict[str, np.ndarray]:
        """Intervals for a run of out-of-sample predictions, each from the earlier realised ones.

        ``positions`` are the rows' integer positions in the series (need not be contiguous).
        """
        self._check_scale(scale)
        y_true = np.asarray(y_true, dtype=float)
        y_pred = np.asarray(y_pred, dtype=float)
        scale_args = {} if scale is None else {"res_scale": scale, "query_scale": scale}
        return rolling_intervals(positions, y_true - y_pred, positions, y_pred, self.horizon, self.window,
                                 self.levels, self.min_history, self.symmetric, **scale_args)

    def offsets(self, residuals, residual_scales=None) -> dict[float, tuple[float, float]]:
        """Serving: offsets from the trailing realised residuals (latest ``window`` are used).

        The caller passes only residuals whose targets are realised (prediction row + horizon
        <= now), oldest first. With ``residual_scales`` the offsets are in scale units.
        """
        return self._offsets(self._trailing(residuals, residual_scales))

    def _trailing(self, residuals, residual_scales=None) -> np.ndarray:
        """The latest ``window`` finite residuals, in scale units when ``residual_scales`` is given."""
        r = np.asarray(residuals, dtype=float)
        if residual_scales is not None:
            r = r / np.asarray(residual_scales, dtype=float)
        return r[np.isfinite(r)][-self.window:]

    def _offsets(self, trailing: np.ndarray) -> dict[float, tuple[float, float]]:
        if len(trailing) < self.min_history:
            raise InvalidInput(f"need at least {self.min_history} realised residuals for an interval, "
                               f"got {len(trailing)}")
        return conformal_offsets(trailing, self.levels, self.symmetric)

    def interval(self, prediction: float, residuals, scale: float | None = None,
                 residual_scales=None) -> dict[str, float]:
        """Serving: {lower80, upper80, lower95, upper95, error_scale} for one new prediction."""
        if (scale is None) != (residual_scales is None):
            raise InvalidInput("pass both scale and residual_scales, or neither")
        self._check_scale(scale)
        s = 1.0 if scale is None else float(scale)
        trailing = self._trailing(residuals, residual_scales)
        out = {}
        for lv, (lo, hi) in self._offsets(trailing).items():
            out[f"lower{level_key(lv)}"] = float(prediction) + lo * s
            out[f"upper{level_key(lv)}"] = float(prediction) + hi * s
        out["error_scale"] = float(np.mean(np.abs(trailing))) * s
        return out
