"""The feature matrix: one function shared by training and serving.

Everything here is a pure function of candles indexed by UTC open time
(oldest first). ``build_features`` is strictly causal: the row for time t is
computed from rows with time <= t only, so appending, altering or removing
later rows never changes it (tests/unit/test_features.py checks this).

Lags and windows count ROWS, not hours. Exchange outages leave holes in the
shared data, so callers run ``regularize`` first; on a complete grid a shift
of k rows is a shift of k candles of time, at training and at serving time.

Indicators come from TA-Lib where it has them (SMA, EMA, RSI, MACD, BBANDS,
ATR); its functions only look backwards. Recursive ones (EMA, MACD, RSI, ATR)
are seeded at the start of the frame they get, so a frame that starts later
gives slightly different values until the seed has decayed: serve with at
least ``SERVING_ROWS`` rows of history and the last row matches what training
computed on the full history.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from crypto_predictor.errors import InvalidInput
from crypto_predictor.sentiment_features import SENTIMENT_FEATURES, sentiment_features

RETURN_LAGS = (1, 3, 6, 12, 24, 72, 168)
SMA_WINDOWS = (12, 24, 72, 168)
EMA_WINDOWS = (12, 24, 72)  # longer EMAs would need far more serving history to converge
RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_PERIOD, BB_NSTD = 20, 2.0
ATR_PERIOD = 14
RVOL_WINDOWS = (24, 168)
VOLUME_WINDOWS = (24, 168)

CONTEXT_RETURN_LAGS = (1, 24)
CONTEXT_RVOL_WINDOW = 24
# A context value older than this many of the main frame's candles is not used.
CONTEXT_MAX_STALE_CANDLES = 3

FEATURE_NAMES: list[str] = (
    [f"ret_{k}" for k in RETURN_LAGS]
    + [f"sma_ratio_{w}" for w in SMA_WINDOWS]
    + [f"ema_ratio_{w}" for w in EMA_WINDOWS]
    + [f"rsi_{RSI_PERIOD}", "macd", "macd_signal", "macd_hist",
       f"bb_pctb_{BB_PERIOD}", f"bb_width_{BB_PERIOD}", f"atr_{ATR_PERIOD}"]
    + [f"rvol_{w}" for w in RVOL_WINDOWS]
    + [f"vol_ratio_{w}" for w in VOLUME_WINDOWS]
    + ["hour_sin", "hour_cos", "dow_sin", "dow_cos"]
)

# Rows before the first one where every own-asset feature is defined: ret_168
# and rvol_168 need 168 earlier closes. Rows [WARMUP:] of a NaN-free input
# have no NaN (context features can start later if the context asset does).
WARMUP = max(max(RETURN_LAGS), max(RVOL_WINDOWS), max(SMA_WINDOWS) - 1, max(VOLUME_WINDOWS) - 1,
             MACD_SLOW + MACD_SIGNAL - 2, RSI_PERIOD, ATR_PERIOD, BB_PERIOD - 1)

# History to pass at serving time so recursive indicators have forgotten their
# seed: the slowest one (EMA 72, decay 71/73 per row) keeps < 1e-4 of it.
SERVING_ROWS = 400

PRICE_COLUMNS = ("open", "high", "low", "close")


def context_feature_names(name: str) -> list[str]:
    return ([f"ctx_{name}_ret_{k}" for k in CONTEXT_RETURN_LAGS]
            + [f"ctx_{name}_rvol_{CONTEXT_RVOL_WINDOW}"])


def feature_names(context_names=(), sentiment: bool = False) -> list[str]:
    """Column order of ``build_features`` for these context names (sorted, so
    the order never depends on how a caller ordered its dict), sentiment last."""
    names = list(FEATURE_NAMES)
    for name in _sorted_context_names(context_names):
        names += context_feature_names(name)
    return names + (SENTIMENT_FEATURES if sentiment else [])


def _sorted_context_names(names) -> list[str]:
    names = list(names)
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(f"context names must be non-empty strings, got {name!r}")
    if len(set(names)) != len(names):
        raise InvalidInput(f"duplicate context names: {names}")
    return sorted(names)


def _check_frame(frame: pd.DataFrame, what: str, columns=PRICE_COLUMNS) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput(f"{what} must be a DataFrame, got {type(frame).__name__}")
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise InvalidInput(f"{what} must be indexed by open time (a DatetimeIndex)")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInput(f"{what} lacks columns {', '.join(missing)}")
    if len(frame) > 1 and not frame.index.is_monotonic_increasing:
        raise InvalidInput(f"{what} must be sorted oldest first")
    if frame.index.has_duplicates:
        raise InvalidInput(f"{what} has duplicate open times")


def _prices(frame: pd.DataFrame, what: str, columns=PRICE_COLUMNS) -> list[np.ndarray]:
    """Price columns as float64 arrays; a NaN would poison every later EMA value, so refuse it."""
    arrays = [frame[c].to_numpy(dtype="float64") for c in columns]
    for col, arr in zip(columns, arrays):
        if not np.all(np.isfinite(arr) & (arr > 0)):
            raise InvalidInput(f"{what}: column {col!r} has missing, infinite or non-positive prices")
    return arrays


def _lagged_diff(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    if len(x) > k:
        out[k:] = x[k:] - x[:-k]
    return out


def _rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    return pd.Series(x).rolling(window, min_periods=window).std().to_numpy()


def trusted_range(frame, o, h, lo, c) -> tuple[np.ndarray, np.ndarray]:
    """High/low with flagged outlier rows clipped to their body.

    The body is anchored at the previous close rather than the published open,
    because a bad print can sit in the open too (BTC's first candle opens at
    16199.91 and closes at 4308.83); on the first row the close stands in.
    """
    if "outlier" not in frame.columns:
        return h, lo
    bad = frame["outlier"].fillna(False).to_numpy(dtype=bool)
    if not bad.any():
        return h, lo
    ref = np.concatenate([c[:1], c[:-1]])
    h, lo = h.copy(), lo.copy()
    h[bad] = np.maximum(ref[bad], c[bad])
    lo[bad] = np.minimum(ref[bad], c[bad])
    return h, lo


def _utc_index(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return index.tz_convert("UTC") if index.tz is not None else index


def _own_features(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    o, h, lo, c = _prices(frame, "candles")
    h, lo = trusted_range(frame, o, h, lo, c)
    vol = frame["volume"].to_numpy(dtype="float64")
    vol = np.where(np.isfinite(vol), vol, 0.0)  # missing volume counts as none traded
    logc = np.log(c)
    out: dict[str, np.ndarray] = {}

    for k in RETURN_LAGS:
        out[f"ret_{k}"] = _lagged_diff(logc, k)
    for w in SMA_WINDOWS:
        out[f"sma_ratio_{w}"] = c / talib.SMA(c, w) - 1.0
    for w in EMA_WINDOWS:
        out[f"ema_ratio_{w}"] = c / talib.EMA(c, w) - 1.0
    out[f"rsi_{RSI_PERIOD}"] = talib.RSI(c, RSI_PERIOD) / 100.0  # 0..1

    macd, signal, hist = talib.MACD(c, MACD_FAST, MACD_SLOW, MACD_SIGNAL)
    out["macd"], out["macd_signal"], out["macd_hist"] = macd / c, signal / c, hist / c

    upper, middle, lower = talib.BBANDS(c, BB_PERIOD, BB_NSTD, BB_NSTD, 0)
    width = upper - lower
    with np.errstate(invalid="ignore", divide="ignore"):
        flat = width <= 1e-12 * middle  # a flat window (long filled gap): put the close mid-band
        out[f"bb_pctb_{BB_PERIOD}"] = np.where(flat, 0.5, (c - lower) / np.where(flat, 1.0, width))
    out[f"bb_width_{BB_PERIOD}"] = width / middle
    out[f"atr_{ATR_PERIOD}"] = talib.ATR(h, lo, c, ATR_PERIOD) / c

    r1 = out["ret_1"]
    for w in RVOL_WINDOWS:
        out[f"rvol_{w}"] = _rolling_std(r1, w)
    for w in VOLUME_WINDOWS:
        mean = talib.SMA(vol, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(mean > 0, vol / np.where(mean > 0, mean, 1.0), 0.0)
        # log1p keeps zero-volume (filled) candles finite; NaN stays NaN in the warm-up
        out[f"vol_ratio_{w}"] = np.where(np.isnan(mean), np.nan, np.log1p(ratio))

    idx = _utc_index(frame.index)
    hour = 2 * np.pi * (idx.hour.to_numpy() + idx.minute.to_numpy() / 60.0) / 24.0
    dow = 2 * np.pi * idx.day_of_week.to_numpy() / 7.0
    out["hour_sin"], out["hour_cos"] = np.sin(hour), np.cos(hour)
    out["dow_sin"], out["dow_cos"] = np.sin(dow), np.cos(dow)
    return out


def _context_features(name: str, ctx: pd.DataFrame, index: pd.DatetimeIndex,
                      tolerance: pd.Timedelta) -> dict[str, np.ndarray]:
    """Another asset's features, each main row taking the latest context row at or
    before its own time (never a later one), and none older than ``tolerance``."""
    what = f"context {name!r}"
    _check_frame(ctx, what, columns=("close",))
    (c,) = _prices(ctx, what, columns=("close",))
    logc = np.log(c)
    names = context_feature_names(name)
    values = [_lagged_diff(logc, k) for k in CONTEXT_RETURN_LAGS]
    values.append(_rolling_std(values[0], CONTEXT_RVOL_WINDOW))
    if len(ctx) == 0 or len(index) == 0:
        return {n: np.full(len(index), np.nan) for n in names}
    # Position of the last context row with time <= each main time.
    pos = ctx.index.searchsorted(index, side="right") - 1
    valid = pos >= 0
    safe = np.where(valid, pos, 0)
    age = index - ctx.index[safe]
    valid &= np.asarray(age <= tolerance)
    return {n: np.where(valid, v[safe], np.nan) for n, v in zip(names, values)}


def _median_step(index: pd.DatetimeIndex) -> pd.Timedelta:
    if len(index) < 2:
        return pd.Timedelta(0)
    return (index[1:] - index[:-1]).median()  # not asi8: its unit follows the index resolution


def build_features(candles: pd.DataFrame, context: dict[str, pd.DataFrame] | None = None,
                   sentiment: pd.Series | None = None) -> pd.DataFrame:
    """Feature matrix (float64, columns ``feature_names(context)``) on the candles' index.

    ``candles``: open/high/low/close/volume indexed by UTC open time, oldest
    first, ideally ``regularize``-d; an optional bool ``outlier`` column clips
    flagged rows' high/low for range indicators. ``context``: name -> another
    asset's candles (at least ``close``), aligned backwards only. ``sentiment``:
    the Fear & Greed value by UTC day (``sentiment_features``; never NaN). The first
    ``WARMUP`` rows contain NaN; callers drop NaN rows. Inputs are not modified.
    """
    _check_frame(candles, "candles", columns=PRICE_COLUMNS + ("volume",))
    context = dict(context or {})
    columns = _own_features(candles)
    tolerance = CONTEXT_MAX_STALE_CANDLES * _median_step(candles.index)
    for name in _sorted_context_names(context):
        columns.update(_context_features(name, context[name], candles.index, tolerance))
    if sentiment is not None:
        step = _median_step(candles.index)
        columns.update(sentiment_features(candles.index, step if step > pd.Timedelta(0) else pd.Timedelta("1h"),
                                          sentiment))
    names = feature_names(context, sentiment is not None)
    return pd.DataFrame({n: columns[n] for n in names}, index=candles.index, dtype="float64")


def make_target(close: pd.Series, horizon: int) -> pd.Series:
    """log(close[t + horizon] / close[t]) by ROW shift; the last ``horizon`` rows are NaN.

    A row shift is a time shift only on a complete grid: ``regularize`` first.
    """
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise InvalidInput(f"horizon must be a positive number of rows, got {horizon!r}")
    if not isinstance(close, pd.Series):
        raise InvalidInput("close must be a pandas Series")
    logc = np.log(close.astype("float64"))
    return (logc.shift(-int(horizon)) - logc).rename(f"target_{int(horizon)}")


def regularize(candles: pd.DataFrame, freq: str = "1h") -> pd.DataFrame:
    """Reindex to the complete grid first..last step ``freq`` so row shifts equal time shifts.

    A missing candle (exchange outage) becomes a flat one at the previous
    close: open = high = low = close = previous close, volume (and
    quote_volume/trades if present) 0, ``outlier`` False; other columns carry
    the previous value. The new bool column ``filled`` marks those rows (and
    keeps rows an earlier call filled). Times off the grid are refused rather
    than silently dropped. The input is not modified.
    """
    _check_frame(candles, "candles", columns=PRICE_COLUMNS)
    step = pd.Timedelta(freq)
    if step <= pd.Timedelta(0):
        raise InvalidInput(f"freq must be a positive duration, got {freq!r}")
    out = candles.copy()
    if len(candles) == 0:
        out["filled"] = pd.Series(dtype=bool)
        return out
    grid = pd.date_range(candles.index[0], candles.index[-1], freq=step, name=candles.index.name)
    off_grid = ~candles.index.isin(grid)
    if off_grid.any():
        raise InvalidInput(f"open time {candles.index[off_grid][0]} is not on the {freq} grid "
                           f"starting at {candles.index[0]}")
    missing = ~grid.isin(candles.index)
    out = out.reindex(grid)
    prev_close = out["close"].ffill()
    for col in PRICE_COLUMNS:
        out.loc[missing, col] = prev_close[missing]
    for col in ("volume", "quote_volume", "trades"):
        if col in out.columns:
            out.loc[missing, col] = 0.0
    if "outlier" in out.columns:
        out["outlier"] = out["outlier"].astype("boolean").fillna(False).astype(bool)
    already = (out["filled"].astype("boolean").fillna(False).to_numpy(dtype=bool)
               if "filled" in out.columns else False)
    rest = [c for c in out.columns if c not in PRICE_COLUMNS + ("volume", "quote_volume", "trades",
                                                                 "outlier", "filled")]
    if rest:
        out[rest] = out[rest].ffill()
    out["filled"] = missing | already
    return out


def resample_daily(candles: pd.DataFrame, freq: str = "1h") -> pd.DataFrame:
    """UTC daily candles from ``freq`` candles, complete days only.

    open first, high max, low min, close last, volume (quote_volume, trades)
    summed, ``outlier`` any, ``filled`` all. A day is complete when it holds
    every one of its 1 day / ``freq`` candles, so the day still in progress and
    a partial first day are dropped; ``regularize`` first so that outage hours
    do not drop whole days.
    """
    _check_frame(candles, "candles", columns=PRICE_COLUMNS + ("volume",))
    step = pd.Timedelta(freq)
    day_len = pd.Timedelta("1D")
    if step <= pd.Timedelta(0) or day_len % step != pd.Timedelta(0):
        raise InvalidInput(f"freq must divide one day, got {freq!r}")
    per_day = day_len // step
    days = _utc_index(candles.index).floor("1D")
    groups = candles.groupby(days)
    out = pd.DataFrame({
        "open": groups["open"].first(),
        "high": groups["high"].max(),
        "low": groups["low"].min(),
        "close": groups["close"].last(),
        "volume": groups["volume"].sum(),
    })
    for col in ("quote_volume", "trades"):
        if col in candles.columns:
            out[col] = groups[col].sum(min_count=1)
    if "outlier" in candles.columns:
        out["outlier"] = groups["outlier"].any().astype(bool)
    if "filled" in candles.columns:
        out["filled"] = groups["filled"].all().astype(bool)
    out = out[groups.size() == per_day]
    out.index.name = candles.index.name
    return out


def market_index(closes: dict[str, pd.Series]) -> pd.DataFrame:
    """An equal-weighted market index as hourly candles: its close at t is exp of the running sum of
    the mean hourly log return of the assets with candles at t-1 and t (an asset joins when it
    lists). Causal: row t uses closes up to t only. Flat candles, zero volume (only the close is used)."""
    if not closes:
        raise InvalidInput("the market index needs at least one asset's closes")
    step = pd.Timedelta("1h")
    returns = []
    for name, close in closes.items():
        c = close.astype("float64")
        if not (c > 0).all():
            raise InvalidInput(f"market index: {name} has non-positive closes")
        prev = c.shift(1)
        r = np.log(c / prev)
        returns.append(r.where(c.index.to_series().diff() == step))  # a gap is not one hour's return
    mean = pd.concat(returns, axis=1).mean(axis=1, skipna=True).fillna(0.0).sort_index()
    close = np.exp(mean.cumsum())
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 0.0,
                         "outlier": False}, index=mean.index)
