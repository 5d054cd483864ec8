"""Fear & Greed features: which day each bar may see, missing values, causality, the feature matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crypto_predictor.features import WARMUP, build_features, feature_names
from crypto_predictor.sentiment_features import SENTIMENT_FEATURES, newest_published_day, sentiment_features

HOUR, DAY = pd.Timedelta("1h"), pd.Timedelta("1D")


@pytest.fixture(scope="module")
def index_values(fear_greed_rows) -> pd.Series:
    days = pd.to_datetime(fear_greed_rows["timestamp"], unit="s", utc=True)
    return pd.Series(fear_greed_rows["value"].to_numpy(dtype=float), index=pd.DatetimeIndex(days))


def one(times, step, daily) -> pd.DataFrame:
    return pd.DataFrame(sentiment_features(pd.DatetimeIndex(times), step, daily), index=pd.DatetimeIndex(times))


def test_an_hourly_bar_sees_a_day_only_after_it_has_ended_and_been_fetched(index_values):
    times = pd.DatetimeIndex(["2021-09-30T23:00Z", "2021-10-01T00:00Z"])
    got = one(times, HOUR, index_values)
    assert got["fg_level"].iloc[0] == index_values["2021-09-29"].item() / 100  # 30 Sept has not ended by 00:00
    assert got["fg_level"].iloc[1] == index_values["2021-09-30"].item() / 100  # closes 01:00: fetched in the hour
    assert (got["fg_missing"] == 0).all()


def test_a_daily_bar_sees_the_day_before_it(index_values):
    got = one(["2021-10-01T00:00Z"], DAY, index_values)
    assert got["fg_level"].iloc[0] == index_values["2021-09-30"].item() / 100
    assert newest_published_day(pd.DatetimeIndex(["2021-10-02T00:00Z"]))[0] == pd.Timestamp("2021-09-30", tz="UTC")


def test_change_and_extreme_flags(index_values):
    got = one(["2018-02-10T12:00Z"], HOUR, index_values)  # sees 2018-02-09
    assert got["fg_change_7"].iloc[0] == pytest.approx((index_values["2018-02-09"].item()
                                                        - index_values["2018-02-02"].item()) / 100)
    levels = index_values.to_numpy()
    times = index_values.index + DAY  # each bar sees the day before it
    flags = one(times, HOUR, index_values)
    assert (flags["fg_extreme_fear"].to_numpy() == (levels <= 25)).all()
    assert (flags["fg_extreme_greed"].to_numpy() == (levels >= 76)).all()
    assert not (flags["fg_extreme_fear"] * flags["fg_extreme_greed"]).any()


def test_a_value_two_days_late_is_missing_and_neutral(index_values):
    # The API has no values for 2018-04-14..16: one day late is used, two days late is missing.
    times = pd.DatetimeIndex(["2018-04-15T00:00Z", "2018-04-16T00:00Z", "2018-04-17T00:00Z", "2018-04-18T00:00Z"])
    got = one(times, HOUR, index_values)
    assert got["fg_missing"].tolist() == [0.0, 1.0, 1.0, 0.0]
    assert got["fg_level"].iloc[0] == index_values["2018-04-13"].item() / 100
    missing = got.iloc[1]
    assert (missing["fg_level"], missing["fg_change_7"], missing["fg_extreme_fear"], missing["fg_extreme_greed"]) == (
        0.5, 0.0, 0.0, 0.0)
    before = one(["2017-12-01T00:00Z"], HOUR, index_values)  # before the index existed
    assert before["fg_missing"].iloc[0] == 1.0
    nothing = one(["2021-01-01T00:00Z"], HOUR, index_values.iloc[:0])
    assert nothing["fg_missing"].iloc[0] == 1.0 and nothing["fg_level"].iloc[0] == 0.5


def test_values_published_after_a_bar_closes_never_change_it(index_values):
    rng = np.random.default_rng(3)
    times = pd.DatetimeIndex(sorted(pd.Timestamp("2019-01-01", tz="UTC") + HOUR * rng.integers(0, 24 * 900, 300)))
    full = one(times, HOUR, index_values)
    for t in times[::37]:
        known = index_values[index_values.index + DAY + HOUR <= t + HOUR]  # published and fetched by its close
        altered = pd.concat([known, index_values[index_values.index > known.index[-1]] * 0 + 99.0])
        assert one([t], HOUR, altered).iloc[0].equals(full.loc[t])


def test_build_features_adds_the_columns_last_and_never_a_nan(btc_candles, index_values):
    candles = btc_candles.set_index("open_time").iloc[-600:]
    plain = build_features(candles)
    with_fg = build_features(candles, sentiment=index_values)
    assert list(with_fg.columns) == feature_names((), sentiment=True) == list(plain.columns) + SENTIMENT_FEATURES
    assert with_fg[plain.columns].equals(plain)
    assert not with_fg[SENTIMENT_FEATURES].isna().any().any()
    assert with_fg.iloc[WARMUP:].notna().all().all()
