"""crypto_predictor.analysis: resampling, indicators, summary and the technical signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from crypto_predictor.serving.analysis import (SIGNAL_THRESHOLD, WARMUP_BARS, analyse, history_hours, indicators,
                                               resample, summary, technical_signal)
from crypto_predictor.errors import InvalidInput
from tests.support.slices import DATA_END


def _hourly(close, start="2021-01-01T00:00Z", volume=None) -> pd.DataFrame:
    close = np.asarray(close, dtype="float64")
    index = pd.date_range(start, periods=len(close), freq="1h", tz="UTC")
    prev = np.concatenate([close[:1], close[:-1]])
    return pd.DataFrame({"open": prev, "high": np.maximum(prev, close) + 1, "low": np.minimum(prev, close) - 1,
                         "close": close, "volume": np.ones(len(close)) if volume is None else volume}, index=index)


@pytest.fixture(scope="module")
def btc(data_dir) -> pd.DataFrame:
    from crypto_predictor.market.csvdir import CsvSource
    from crypto_predictor.market.validation import validate

    raw = CsvSource(data_dir).fetch("bitcoin", start="2021-05-01T00:00Z", end=DATA_END).candles
    clean, _ = validate(raw, "1h")
    return clean.set_index("open_time")


def test_resample_to_4h_and_1d_keeps_complete_utc_bars(btc):
    hourly = btc.loc["2021-09-01":]
    four = resample(hourly, "4h")
    assert (four.index.hour % 4 == 0).all() and len(four) == 30 * 6
    first = hourly.iloc[:4]
    row = four.iloc[0]
    assert row["open"] == first["open"].iloc[0] and row["close"] == first["close"].iloc[-1]
    assert row["high"] == first["high"].max() and row["low"] == first["low"].min()
    assert row["volume"] == pytest.approx(first["volume"].sum())
    daily = resample(hourly.iloc[:-3], "1d")  # the last day is then incomplete and dropped
    assert daily.index[-1] == pd.Timestamp("2021-09-29", tz="UTC")
    assert len(hourly) == 718 and len(resample(hourly, "1h")) == 720  # two outage hours filled
    with pytest.raises(InvalidInput, match="valid: 1h, 4h, 1d"):
        resample(hourly, "2h")


def test_outage_hours_are_filled_not_dropped_and_outlier_wicks_are_clipped():
    frame = _hourly(np.linspace(100, 110, 48))
    holed = frame.drop(frame.index[5:7])  # a two-hour outage on the first day
    assert len(resample(holed, "1d")) == 2
    spiky = frame.assign(outlier=False)
    spiky.iloc[10, spiky.columns.get_loc("high")] = 10_000.0
    spiky.iloc[10, spiky.columns.get_loc("outlier")] = True
    assert resample(spiky, "1d")["high"].max() < 200  # flagged print clipped to the body
    assert resample(spiky.drop(columns="outlier"), "1d")["high"].max() == 10_000.0  # unflagged: as published


def test_indicators_are_talib_values(btc):
    bars = resample(btc, "1d")
    ind = indicators(bars)
    close = bars["close"].to_numpy()
    np.testing.assert_allclose(ind["sma_50"], talib.SMA(close, 50), equal_nan=True)
    np.testing.assert_allclose(ind["rsi_14"], talib.RSI(close, 14), equal_nan=True)
    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0)
    np.testing.assert_allclose(ind["bb_lower"], lower, equal_nan=True)
    assert list(ind.columns) == ["sma_20", "sma_50", "ema_12", "ema_26", "rsi_14", "macd", "macd_signal",
                                "macd_hist", "bb_upper", "bb_middle", "bb_lower"]


def test_summary_figures_on_a_known_path():
    # 100 -> 120 -> 90 -> 108: max drawdown from 120 to 90 is -25%, return +8%
    closes = np.r_[np.linspace(100, 120, 25), np.linspace(120, 90, 25)[1:], np.linspace(90, 108, 25)[1:]]
    bars = _hourly(closes, volume=np.r_[np.ones(36), np.full(37, 3.0)])
    out = summary(bars, "1h")
    assert out["return_pct"] == pytest.approx(8.0)
    assert out["max_drawdown_pct"] == pytest.approx(-25.0)
    assert out["volume_trend"]["direction"] == "up" and out["volume_trend"]["change_pct"] > 100
    log_ret = np.diff(np.log(closes))
    assert out["volatility_annualized_pct"] == pytest.approx(np.std(log_ret, ddof=1) * np.sqrt(8760) * 100)
    assert summary(bars.iloc[:1], "1h")["return_pct"] is None


def test_signal_is_the_net_vote_with_reasons():
    steps = np.arange(150)
    falling = _hourly(200 - 0.004 * steps ** 2)  # an accelerating fall: trend votes say sell
    sig = technical_signal(falling, indicators(falling))
    votes = {v["indicator"]: v for v in sig["votes"]}
    assert set(votes) == {"rsi", "macd", "sma_trend", "ema_cross", "bollinger"}
    assert votes["sma_trend"]["vote"] == votes["ema_cross"]["vote"] == votes["macd"]["vote"] == -1
    assert votes["rsi"]["vote"] == 1 and "oversold" in votes["rsi"]["reason"]  # RSI ~0 on a pure fall
    assert sig["score"] == sum(v["vote"] for v in sig["votes"]) == -SIGNAL_THRESHOLD
    assert sig["signal"] == "SELL"
    rising = _hourly(100 + 0.004 * steps ** 2)
    assert technical_signal(rising, indicators(rising))["signal"] == "BUY"
    flat = _hourly(np.full(150, 100.0))  # nothing moves: no vote at all (not "oversold")
    assert technical_signal(flat, indicators(flat))["score"] == 0
    short = _hourly(np.linspace(100, 101, 10))  # too short for any indicator
    assert technical_signal(short, indicators(short))["signal"] == "HOLD"
    assert all(v["value"] is None for v in technical_signal(short, indicators(short))["votes"])


def test_analyse_window_counts_back_from_the_newest_candle(btc):
    candles = btc.iloc[-history_hours("4h", 10):]
    out = analyse(candles, "4h", 10)
    assert out["window"]["end"] == "2021-10-01T00:00:00+00:00"
    assert out["window"]["start"] == "2021-09-21T00:00:00+00:00" and len(out["ohlcv"]) == 60
    for series in out["indicators"].values():  # warm-up history makes every indicator defined
        assert len(series) == 60 and None not in series
    assert history_hours("4h", 10) == 240 + (WARMUP_BARS + 1) * 4
    assert analyse(candles.iloc[:0], "1d", 10)["ohlcv"] == []
