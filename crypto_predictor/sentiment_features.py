"""Fear & Greed features of a bar grid, causal: a bar uses only values published before it closes.

A day's value is taken as published at 00:00 UTC of the next day (the API's day in progress is not
stored, ``market.fear_greed``), and as stored within ``FETCH_GRACE`` after that by the hourly
refresh. So a bar closing at T uses the newest day D with D + 1 day + FETCH_GRACE <= T: an hourly
bar opening at 00:00 of D+1 (closing 01:00) is the first to see D; a daily bar of D+1 sees D. We
could not measure the real publication time here (no network), so this is the issue's assumption.

A value more than ``MAX_LATE_DAYS`` older than the day a bar should see (the 2018-04-14..16 hole,
history before 2018-02-01, a refresh that failed) is missing: ``fg_missing`` is 1 and the other
features take neutral values (level 0.5, change 0, no flags), so a row is never dropped and a
late value never blocks a prediction. The same function runs at training and serving time, so a
missing value is marked the same way in both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SENTIMENT_FEATURES = ["fg_level", "fg_change_7", "fg_extreme_fear", "fg_extreme_greed", "fg_missing"]
PUBLISHED_AFTER = pd.Timedelta(days=1)
FETCH_GRACE = pd.Timedelta(hours=1)
MAX_LATE_DAYS = 1
CHANGE_DAYS = 7
# alternative.me's classes: 0-25 Extreme Fear, 26-46 Fear, 47-54 Neutral, 55-75 Greed, 76-100 Extreme Greed.
EXTREME_FEAR, EXTREME_GREED = 25.0, 76.0
DAY = pd.Timedelta(days=1)


def uses_sentiment(feature_names) -> bool:
    return any(name in SENTIMENT_FEATURES for name in feature_names)


def newest_published_day(close_times: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The newest day whose value a bar closing at each time may use."""
    return (close_times - PUBLISHED_AFTER - FETCH_GRACE).floor("1D")


def sentiment_features(index: pd.DatetimeIndex, step: pd.Timedelta, daily: pd.Series) -> dict[str, np.ndarray]:
    """SENTIMENT_FEATURES for bars opening at ``index`` (UTC) and lasting ``step``; ``daily``: value
    (0-100) by UTC day, oldest first (any days, none at all included)."""
    n = len(index)
    days = pd.DatetimeIndex(daily.index)
    if n == 0 or len(days) == 0:
        level, change, valid = np.full(n, 50.0), np.zeros(n), np.zeros(n, dtype=bool)
    else:
        days = days.tz_convert("UTC") if days.tz is not None else days.tz_localize("UTC")
        values = daily.to_numpy(dtype="float64")
        wanted = newest_published_day(index.tz_convert("UTC") + step)
        pos = days.searchsorted(wanted, side="right") - 1
        safe = np.maximum(pos, 0)
        valid = (pos >= 0) & np.asarray(wanted - days[safe] <= MAX_LATE_DAYS * DAY)
        level = np.where(valid, values[safe], 50.0)
        before = days[safe] - CHANGE_DAYS * DAY
        pos7 = np.minimum(days.searchsorted(before), len(days) - 1)
        has7 = valid & np.asarray(days[pos7] == before)
        change = np.where(has7, level - values[pos7], 0.0)
    return {"fg_level": level / 100.0, "fg_change_7": change / 100.0,
            "fg_extreme_fear": (valid & (level <= EXTREME_FEAR)).astype(float),
            "fg_extreme_greed": (valid & (level >= EXTREME_GREED)).astype(float),
            "fg_missing": (~valid).astype(float)}
