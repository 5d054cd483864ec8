"""Historical analysis for the app's charts: pure functions of candles indexed by UTC open time.

``analyse`` takes hourly candles (at least open/high/low/close/volume), resamples them to
the requested interval, computes indicators on the whole frame it gets (so pass some
history before the window: recursive indicators need it), then keeps the last ``days``
days: OHLCV, indicators, a summary and a rule-based BUY/SELL/HOLD signal with the
indicator votes behind it. The signal is a description of the chart, not a forecast.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import talib

from crypto_predictor.errors import InvalidInput
from crypto_predictor.features import trusted_range, regularize

INTERVAL_HOURS = {"1h": 1, "4h": 4, "1d": 24}
SMA_PERIODS = (20, 50)
EMA_PERIODS = (12, 26)
RSI_PERIOD = 14
MACD = (12, 26, 9)
BB_PERIOD, BB_NSTD = 20, 2.0
# Bars of history to load before the window so every indicator is defined (and the
# recursive ones have mostly forgotten their seed) at the window's first bar.
WARMUP_BARS = 100
# A net vote of at least this many indicators makes BUY or SELL; less is HOLD.
SIGNAL_THRESHOLD = 2
VOLUME_TREND_BAND = 0.10  # +-10% between halves of the window counts as flat


def resample(candles: pd.DataFrame, interval: str) -> pd.DataFrame:
    """OHLCV bars of ``interval`` (1h, 4h, 1d) from hourly candles; complete bars only.

    Gaps (exchange outages) are filled flat by ``features.regularize`` first so an
    outage hour does not drop a whole bar; bars are aligned on UTC midnight. Wicks of
    candles the store flagged as outliers are clipped to their body, as the features do,
    so one bad print does not flatten the chart.
    """
    if interval not in INTERVAL_HOURS:
        raise InvalidInput(f"unknown interval {interval!r}; valid: {', '.join(INTERVAL_HOURS)}")
    cols = ["open", "high", "low", "close", "volume"] + (["outlier"] if "outlier" in candles.columns else [])
    frame = regularize(candles[cols], "1h")
    if "outlier" in frame.columns:
        arrays = [frame[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close")]
        high, low = trusted_range(frame, *arrays)
        frame = frame.assign(high=high, low=low)
    if interval == "1h" or frame.empty:
        return frame[["open", "high", "low", "close", "volume"]]
    hours = INTERVAL_HOURS[interval]
    groups = frame.groupby(frame.index.floor(f"{hours}h"))
    out = groups.agg(open=("open", "first"), high=("high", "max"), low=("low", "min"),
                     close=("close", "last"), volume=("volume", "sum"))
    complete = groups.size() == hours
    return out[complete.to_numpy()]


def indicators(bars: pd.DataFrame) -> pd.DataFrame:
    """SMA, EMA, RSI, MACD and Bollinger bands of the close, one column each (TA-Lib, causal)."""
    close = bars["close"].to_numpy(dtype="float64")
    cols = {}
    for p in SMA_PERIODS:
        cols[f"sma_{p}"] = talib.SMA(close, timeperiod=p)
    for p in EMA_PERIODS:
        cols[f"ema_{p}"] = talib.EMA(close, timeperiod=p)
    cols[f"rsi_{RSI_PERIOD}"] = talib.RSI(close, timeperiod=RSI_PERIOD)
    fast, slow, signal = MACD
    cols["macd"], cols["macd_signal"], cols["macd_hist"] = talib.MACD(
        close, fastperiod=fast, slowperiod=slow, signalperiod=signal)
    cols["bb_upper"], cols["bb_middle"], cols["bb_lower"] = talib.BBANDS(
        close, timeperiod=BB_PERIOD, nbdevup=BB_NSTD, nbdevdn=BB_NSTD)
    return pd.DataFrame(cols, index=bars.index)


def summary(bars: pd.DataFrame, interval: str) -> dict:
    """Return (first open to last close), annualised volatility of bar log returns, max
    drawdown of the close, and volume trend over ``bars``."""
    close = bars["close"].to_numpy(dtype="float64")
    if len(close) < 2:
        return {"bars": len(close), "return_pct": None, "volatility_annualized_pct": None,
                "max_drawdown_pct": None, "high": _num(bars["high"].max()) if len(bars) else None,
                "low": _num(bars["low"].min()) if len(bars) else None, "volume_trend": None}
    log_ret = np.diff(np.log(close))
    per_year = 365 * 24 / INTERVAL_HOURS[interval]
    drawdown = close / np.maximum.accumulate(close) - 1.0
    start = float(bars["open"].iloc[0])
    return {
        "bars": int(len(close)),
        "start_price": _num(start),
        "end_price": _num(close[-1]),
        "return_pct": _num((close[-1] / start - 1.0) * 100),
        "volatility_annualized_pct": _num(np.std(log_ret, ddof=1) * math.sqrt(per_year) * 100)
        if len(log_ret) > 1 else None,
        "max_drawdown_pct": _num(drawdown.min() * 100),
        "high": _num(bars["high"].max()),
        "low": _num(bars["low"].min()),
        "volume_trend": volume_trend(bars["volume"].to_numpy(dtype="float64")),
    }


def volume_trend(volume: np.ndarray) -> dict:
    """Mean volume of the second half of the window against the first half."""
    half = len(volume) // 2
    first, second = volume[:half].mean() if half else 0.0, volume[half:].mean() if half else 0.0
    if half == 0 or first <= 0:
        return {"direction": "flat", "change_pct": None}
    change = second / first - 1.0
    direction = "up" if change > VOLUME_TREND_BAND else "down" if change < -VOLUME_TREND_BAND else "flat"
    return {"direction": direction, "change_pct": _num(change * 100)}


def technical_signal(bars: pd.DataFrame, ind: pd.DataFrame) -> dict:
    """BUY / SELL / HOLD from five indicator votes on the last bar (+1 buy, -1 sell, 0 hold)."""
    if bars.empty:
        return {"signal": "HOLD", "score": 0, "votes": []}
    last, close = ind.iloc[-1], float(bars["close"].iloc[-1])
    rsi, hist = last[f"rsi_{RSI_PERIOD}"], last["macd_hist"]
    recent = bars["close"].iloc[-(RSI_PERIOD + 1):]
    if len(recent) > RSI_PERIOD and recent.max() == recent.min():
        rsi = 50.0  # TA-Lib says 0 when nothing moved; no gains and no losses is neutral
    sma_fast, sma_slow = last[f"sma_{SMA_PERIODS[0]}"], last[f"sma_{SMA_PERIODS[1]}"]
    ema_fast, ema_slow = last[f"ema_{EMA_PERIODS[0]}"], last[f"ema_{EMA_PERIODS[1]}"]
    lower, upper = last["bb_lower"], last["bb_upper"]
    votes = [
        _vote("rsi", rsi, rsi < 30, rsi > 70, "oversold (< 30)", "overbought (> 70)", "between 30 and 70"),
        _vote("macd", hist, hist > 0, hist < 0, "MACD above its signal line", "MACD below its signal line",
              "MACD on its signal line"),
        _vote("sma_trend", sma_fast - sma_slow if _ok(sma_fast, sma_slow) else math.nan,
              sma_fast > sma_slow, sma_fast < sma_slow, f"SMA {SMA_PERIODS[0]} above SMA {SMA_PERIODS[1]}",
              f"SMA {SMA_PERIODS[0]} below SMA {SMA_PERIODS[1]}", "SMAs equal"),
        _vote("ema_cross", ema_fast - ema_slow if _ok(ema_fast, ema_slow) else math.nan,
              ema_fast > ema_slow, ema_fast < ema_slow, f"EMA {EMA_PERIODS[0]} above EMA {EMA_PERIODS[1]}",
              f"EMA {EMA_PERIODS[0]} below EMA {EMA_PERIODS[1]}", "EMAs equal"),
        _vote("bollinger", close, _ok(lower) and close < lower, _ok(upper) and close > upper,
              "close below the lower band", "close above the upper band", "close inside the bands",
              defined=_ok(lower, upper)),
    ]
    score = sum(v["vote"] for v in votes)
    signal = "BUY" if score >= SIGNAL_THRESHOLD else "SELL" if score <= -SIGNAL_THRESHOLD else "HOLD"
    return {"signal": signal, "score": int(score), "threshold": SIGNAL_THRESHOLD, "votes": votes}


def _ok(*values) -> bool:
    return all(v is not None and np.isfinite(v) for v in values)


def _vote(name, value, buy, sell, buy_why, sell_why, hold_why, defined=None) -> dict:
    defined = _ok(value) if defined is None else defined
    if not defined:
        return {"indicator": name, "value": None, "vote": 0, "reason": "not enough history"}
    vote = 1 if buy else -1 if sell else 0
    reason = buy_why if vote > 0 else sell_why if vote < 0 else hold_why
    return {"indicator": name, "value": _num(value), "vote": vote, "reason": reason}


def _num(value, digits: int = 6):
    """A JSON-safe float (None for NaN / inf), rounded to keep payloads small."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _series(values) -> list:
    return [_num(v) for v in np.asarray(values, dtype="float64")]


def analyse(candles: pd.DataFrame, interval: str = "1d", days: int = 30) -> dict:
    """Everything the analysis endpoint returns, for the last ``days`` days of ``candles``.

    ``days`` counts back from the newest candle given, not from today: the store may end
    in the past (the shared data stops on 2021-09-30).
    """
    bars = resample(candles, interval)
    if bars.empty:
        return {"interval": interval, "days": days, "window": None, "ohlcv": [], "indicators": {},
                "summary": summary(bars, interval), "signal": technical_signal(bars, bars)}
    ind = indicators(bars)
    end = bars.index[-1] + pd.Timedelta(hours=INTERVAL_HOURS[interval])  # close time of the last bar
    keep = bars.index >= end - pd.Timedelta(days=days)
    window, ind_window = bars[keep], ind[keep]
    ohlcv = [{"time": t.isoformat(), "open": _num(o), "high": _num(h), "low": _num(lo), "close": _num(c),
              "volume": _num(v, 4)}
             for t, o, h, lo, c, v in zip(window.index, window["open"], window["high"], window["low"],
                                          window["close"], window["volume"])]
    return {
        "interval": interval,
        "days": days,
        "window": {"start": window.index[0].isoformat(), "end": end.isoformat()},
        "ohlcv": ohlcv,
        "indicators": {col: _series(ind_window[col]) for col in ind_window.columns},
        "summary": summary(window, interval),
        "signal": technical_signal(window, ind_window),
    }


def history_hours(interval: str, days: int) -> int:
    """Hourly candles to load for ``days`` of ``interval`` bars plus indicator warm-up."""
    return days * 24 + (WARMUP_BARS + 1) * INTERVAL_HOURS[interval]
