"""How assets move together, from stored candles: the matrix of bar-return correlations over a window,
and each asset's rolling correlation to bitcoin (the market's reference)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crypto_predictor.errors import DataNotFound, InsufficientData
from crypto_predictor.serving.analysis import INTERVAL_HOURS, resample
from crypto_predictor.timeutil import iso

ROLLING_BARS = 30
REFERENCE = "bitcoin"
HOUR = pd.Timedelta(hours=1)


def _round(value) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def bar_returns(store, assets: list[str], interval: str, days: int) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Log returns of complete ``interval`` bars over the last ``days`` days all assets share, and the
    newest hourly candle they all have."""
    newest = {a: store.latest_time(a, "1h") for a in assets}
    missing = [a for a, t in newest.items() if t is None]
    if missing:
        raise DataNotFound(f"no candles stored for {', '.join(missing)}; run ingest first", assets=missing)
    end = min(newest.values())
    start = end - pd.Timedelta(days=days) + HOUR - INTERVAL_HOURS[interval] * HOUR  # one bar more: a first return
    closes = pd.concat({a: resample(store.load(a, "1h", start, end), interval)["close"] for a in assets}, axis=1,
                       join="inner")
    return np.log(closes).diff().iloc[1:], end


def correlation(store, assets: list[str], interval: str, days: int) -> dict:
    """``assets``' return correlation matrix and their rolling ROLLING_BARS-bar correlation to bitcoin."""
    loaded = list(dict.fromkeys([*assets, REFERENCE]))
    returns, end = bar_returns(store, loaded, interval, days)
    if len(returns) < ROLLING_BARS:
        raise InsufficientData(f"{len(returns)} common {interval} bars in {days} days; a correlation needs at "
                               f"least {ROLLING_BARS}: ask for more days or a shorter interval")
    matrix = returns[assets].corr()
    rolling = {}
    for asset in assets:
        if asset == REFERENCE:
            continue
        series = returns[asset].rolling(ROLLING_BARS).corr(returns[REFERENCE]).dropna()
        rolling[asset] = [{"time": iso(t), "correlation": _round(v)} for t, v in series.items()]
    return {"symbols": assets, "interval": interval, "days": days, "data_as_of": iso(end + HOUR),
            "bars": len(returns), "first_bar": iso(returns.index[0]), "reference": REFERENCE,
            "window": ROLLING_BARS,
            "matrix": {a: {b: _round(matrix.loc[a, b]) for b in assets} for a in assets},
            "rolling_to_reference": rolling}
