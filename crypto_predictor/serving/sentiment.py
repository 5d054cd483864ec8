"""The Fear & Greed Index as the app shows it: the current value, its class and the recent days."""

from __future__ import annotations

import pandas as pd

from crypto_predictor.market.fear_greed import INDEX
from crypto_predictor.market.sentiment import DAY, SentimentStore, missing_days
from crypto_predictor.sentiment_features import PUBLISHED_AFTER

ABOUT = {"index": INDEX, "name": "Crypto Fear & Greed Index", "source": "alternative.me",
         "scale": "0 = extreme fear .. 100 = extreme greed"}


def _day(day: pd.Timestamp, value: float, classification) -> dict:
    return {"date": day.strftime("%Y-%m-%d"), "value": int(value) if float(value).is_integer() else float(value),
            "classification": classification}


def newest_day(engine, as_of: pd.Timestamp | None = None) -> pd.Timestamp | None:
    """The newest stored day (published by ``as_of`` when given: the day after it began)."""
    return SentimentStore(engine).latest_day(None if as_of is None else as_of - PUBLISHED_AFTER)


def sentiment_window(engine, days: int, as_of: pd.Timestamp | None = None) -> dict | None:
    """The ``days`` days up to the newest value (known by ``as_of``), or None when none is stored."""
    newest = newest_day(engine, as_of)
    if newest is None:
        return None
    frame = SentimentStore(engine).frame(newest - (days - 1) * DAY, newest)
    last = frame.iloc[-1]
    series = [_day(d, v, c) for d, v, c in zip(frame.index, frame["value"], frame["classification"])]
    gaps = missing_days(pd.Series(frame.index))
    return {**ABOUT, "days": days,
            "current": {**_day(frame.index[-1], last["value"], last["classification"]),
                        "published_at": (frame.index[-1] + PUBLISHED_AFTER).isoformat()},
            "series": series, "missing_days": sum(g[2] for g in gaps)}
