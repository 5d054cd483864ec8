"""The HAR variance forecast that scales the intervals: causal fit, honest forecasts, stored state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crypto_predictor.calibration import RollingConformal
from crypto_predictor.errors import InsufficientData, InvalidInput
from crypto_predictor.volatility import HarVolatility
from tests.support.synthetic import garch_returns


def _garch_close(n: int, seed: int = 5) -> np.ndarray:
    return garch_returns(n, seed, a=0.10, b=0.88)[1]


def test_the_fit_sees_only_rows_before_its_end():
    close = _garch_close(6000)
    fitted = HarVolatility.fit(close, 24, 24, end=3000)
    changed = close.copy()
    changed[3000:] *= np.exp(np.random.default_rng(9).normal(0, 0.05, 3000).cumsum())  # another future
    assert HarVolatility.fit(changed, 24, 24, end=3000) == fitted
    assert HarVolatility.fit(close, 24, 24, end=4000) != fitted  # more rows: a different fit
    with pytest.raises(InsufficientData):
        HarVolatility.fit(close, 24, 24, end=400)  # the 14-day window alone takes 336 rows
    with pytest.raises(InsufficientData):
        HarVolatility.fit(close, 24, 24, end=-5)  # a negative end is no data, not "all but the last 5"


def test_forecasts_track_the_variance_that_follows():
    close = _garch_close(12000)
    har = HarVolatility.fit(close, 24, 24, end=6000)
    assert har.long_days == 14 and sum(har.coef[1:]) > 0.5  # persistent: recent variance predicts the next
    scale = har.scale(close)
    assert np.isnan(scale[:14 * 24]).all() and np.isfinite(scale[14 * 24 + 1:]).all()
    r2 = np.diff(np.log(close), prepend=np.nan) ** 2
    future = np.array([r2[t + 1:t + 25].sum() for t in range(6000, 11900)])
    forecast = scale[6000:11900] ** 2
    calm, wild = forecast < np.quantile(forecast, 1 / 3), forecast > np.quantile(forecast, 2 / 3)
    assert future[wild].mean() > 1.5 * future[calm].mean()  # on rows the fit never saw
    assert np.corrcoef(np.log(forecast), np.log(future))[0, 1] > 0.3
    # a standard deviation, not a median: the forecast variance matches the realised one on average
    assert future.mean() / forecast.mean() == pytest.approx(1.0, abs=0.15) and har.smear > 1


def test_state_round_trip_and_refusals():
    har = HarVolatility.fit(_garch_close(3000), 1, 24)
    assert HarVolatility.from_state(har.to_state()) == har
    conformal = RollingConformal.for_horizon(1, normalise=False, har=har.to_state())
    assert conformal.normalised and conformal.vol_span is None
    close = _garch_close(1000, seed=2)
    assert np.array_equal(conformal.scale(close), har.scale(close), equal_nan=True)
    with pytest.raises(InvalidInput):
        conformal.batch(np.arange(10), np.zeros(10), np.zeros(10))  # normalised: needs scales
    for bad in ({"coef": [1, 2]}, {**har.to_state(), "coef": [0, 1, float("nan"), 0]}, {**har.to_state(), "long_days": 3}):
        with pytest.raises(InvalidInput):
            HarVolatility.from_state(bad)
    with pytest.raises(InvalidInput):
        RollingConformal(vol_span=24, har=har.to_state())
    with pytest.raises(InvalidInput):
        har.scale(np.array([1.0, -1.0, 2.0]))


def test_a_partial_scale_divides_by_a_power_of_the_volatility_and_reports_the_volatility_itself():
    from crypto_predictor.confidence import DirectionCalibrator
    from crypto_predictor.registry.artifacts import calibration_state

    close = _garch_close(3000)
    har = HarVolatility.fit(close, 24, 24)
    conformal = RollingConformal.for_horizon(24, normalise=False, har=har.to_state(), scale_power=0.5)
    vol = har.scale(close)
    np.testing.assert_allclose(conformal.scale(close), vol ** 0.5, equal_nan=True)
    finite = np.isfinite(vol)
    np.testing.assert_allclose([conformal.volatility(s) for s in conformal.scale(close)[finite]], vol[finite])
    # Stored with the bundle and read back as the same settings; bundles from before mean a power of 1.
    calibrator = DirectionCalibrator().fit(np.linspace(0, 2, 40), np.tile([0.0, 1.0], 20))
    state = calibration_state(conformal, calibrator, [], [], None)["conformal"]
    again = RollingConformal(**state)
    assert again.scale_power == 0.5 and np.array_equal(again.scale(close), conformal.scale(close), equal_nan=True)
    old = RollingConformal(**{k: v for k, v in state.items() if k != "scale_power"})
    assert old.scale_power == 1.0 and np.array_equal(old.scale(close), vol, equal_nan=True)
    for bad in (0, -1, 3, float("nan")):
        with pytest.raises(InvalidInput):
            RollingConformal(har=har.to_state(), scale_power=bad)


def _candles(n: int, seed: int = 3, sd=None, steps: int = 60) -> pd.DataFrame:
    """Hourly candles whose inside-the-hour path is a random walk with per-hour SD ``sd`` (GARCH if None)."""
    rng = np.random.default_rng(seed)
    sd = np.sqrt(np.diff(np.log(_garch_close(n + 1, seed)), prepend=0.0)[1:] ** 2 + 1e-6) if sd is None else sd
    paths = np.cumsum(rng.standard_normal((n, steps)) * (np.asarray(sd) / np.sqrt(steps))[:, None], axis=1)
    level = np.concatenate([[0.0], np.cumsum(paths[:, -1])[:-1]])  # each hour opens at the last close
    logs = level[:, None] + np.hstack([np.zeros((n, 1)), paths])
    index = pd.date_range("2021-01-04", periods=n, freq="h", tz="UTC")  # a Monday, 00:00
    return pd.DataFrame({"open": 100 * np.exp(logs[:, 0]), "high": 100 * np.exp(logs.max(axis=1)),
                         "low": 100 * np.exp(logs.min(axis=1)), "close": 100 * np.exp(logs[:, -1])}, index=index)


def test_the_range_measure_is_the_bar_variance_with_less_noise_and_ignores_flagged_wicks():
    candles = _candles(4000, sd=np.full(4000, 0.01), steps=400)
    ranged = HarVolatility((0,) * 4, 0.0, 24, 14, measure="range").bar_variance(candles)[1:]
    squared = HarVolatility((0,) * 4, 0.0, 24, 14).bar_variance(candles)[1:]
    assert ranged.mean() == pytest.approx(1e-4, rel=0.08) and squared.mean() == pytest.approx(1e-4, rel=0.08)
    assert ranged.std() < 0.5 * squared.std()  # Parkinson's estimator: several times as efficient
    flagged = candles.assign(outlier=False)
    flagged.iloc[2000, flagged.columns.get_loc("high")] *= 3.0  # a bad print
    plain = HarVolatility((0,) * 4, 0.0, 24, 14, measure="range").bar_variance(flagged)
    assert plain[2000] > 0.4  # (log 3)^2 / (4 ln 2)
    flagged.iloc[2000, flagged.columns.get_loc("outlier")] = True
    trusted = HarVolatility((0,) * 4, 0.0, 24, 14, measure="range").bar_variance(flagged)
    move = np.log(candles["close"].iloc[2000] / candles["close"].iloc[1999])
    assert trusted[2000] == pytest.approx(move ** 2 / (4 * np.log(2)))
    with pytest.raises(InvalidInput, match="open, high, low and close"):
        HarVolatility((0,) * 4, 0.0, 24, 14, measure="range").bar_variance(candles["close"].to_numpy())


def test_the_season_finds_the_busy_hours_and_calm_weekends():
    n = 30 * 168
    hours = pd.date_range("2021-01-04", periods=n, freq="h", tz="UTC").hour
    index = pd.date_range("2021-01-04", periods=n, freq="h", tz="UTC")
    weekend = index.day_of_week >= 5
    clustered = pd.Series(np.abs(garch_returns(n, 4, a=0.10, b=0.88)[0])).rolling(24, min_periods=1).mean().to_numpy()
    seasonal = np.where((hours >= 14) & (hours < 17), 2.0, 1.0) * np.where(weekend, 0.5, 1.0)
    candles = _candles(n, seed=4, sd=clustered * seasonal)
    settings = HarVolatility.for_bars(24)
    assert settings == {"measure": "range", "lags": (1, 6), "season": True}
    har = HarVolatility.fit(candles, 1, 24, **settings)
    assert har.season and len(har.coef) == 4 + 2 + 24
    scale = har.scale(candles)
    nxt = (hours + 1) % 24  # each row forecasts the next hour
    weekday = np.isfinite(scale) & ~(index + pd.Timedelta(hours=1)).day_of_week.isin([5, 6])
    busy, calm = weekday & (nxt >= 14) & (nxt < 17), weekday & ((nxt < 13) | (nxt > 18))
    assert np.median(scale[busy]) / np.median(scale[calm]) == pytest.approx(2.0, rel=0.15)
    sunday = np.isfinite(scale) & ((index + pd.Timedelta(hours=1)).day_of_week == 6) & ((nxt < 13) | (nxt > 18))
    assert np.median(scale[sunday]) / np.median(scale[calm]) == pytest.approx(0.5, rel=0.2)
    with pytest.raises(InvalidInput, match="indexed by open time"):
        har.scale(candles.reset_index(drop=True))
    # Over a day's horizon the season is the weekend's share of the target hours: from Friday 23:00
    # the next 24 hours are all Saturday, from Thursday 23:00 all Friday.
    daily = HarVolatility.fit(candles, 24, 24, **settings)
    assert daily.season_hours == 24 and har.season_hours == 1
    assert daily.coef[6:-1] == (0.0,) * 23  # the hours of the day even out over 24 of them
    assert HarVolatility.from_state(daily.to_state()) == daily
    day_scale = daily.scale(candles)
    friday_night = np.isfinite(day_scale) & (index.day_of_week == 4) & (hours == 23)  # next: Saturday
    thursday_night = np.isfinite(day_scale) & (index.day_of_week == 3) & (hours == 23)
    ratio = np.median(day_scale[friday_night]) / np.median(day_scale[thursday_night])
    assert ratio == pytest.approx(0.5, rel=0.2)  # weekends move half as much (the SD above)


def test_the_range_model_is_causal_and_round_trips_and_old_states_mean_the_first_models():
    candles = _candles(6000, seed=6)
    settings = HarVolatility.for_bars(24)
    fitted = HarVolatility.fit(candles, 24, 24, end=4000, **settings)
    other = candles.copy()
    other.iloc[4000:, :] *= 1.5  # another future
    other.iloc[4000:, other.columns.get_loc("high")] *= 1.1
    assert HarVolatility.fit(other, 24, 24, end=4000, **settings) == fitted
    assert HarVolatility.from_state(fitted.to_state()) == fitted
    first = HarVolatility.fit(candles["close"].to_numpy(), 24, 24)
    old_state = {k: v for k, v in first.to_state().items() if k in ("coef", "floor", "rows_per_day", "long_days", "smear")}
    assert HarVolatility.from_state(old_state) == first and first.measure == "return" and not first.lags
    np.testing.assert_array_equal(first.scale(candles), first.scale(candles["close"].to_numpy()))
    for bad in ({**fitted.to_state(), "coef": fitted.coef[:-1]}, {**fitted.to_state(), "measure": "vibes"},
                {**fitted.to_state(), "rows_per_day": 1}):
        with pytest.raises(InvalidInput):
            HarVolatility.from_state(bad)


def test_too_few_rows_drop_the_lags_and_season_and_an_exploding_fit_is_refused():
    candles = _candles(60 * 24, seed=8)  # 60 days: ~1,100 fitting rows, fewer than 40 per coefficient of 30
    har = HarVolatility.fit(candles, 1, 24, **HarVolatility.for_bars(24))
    assert har.measure == "range" and not har.lags and not har.season and len(har.coef) == 4
    # 40 days: 600 rows whose day, week and 14-day components move together; this one's slopes sum to -1.1
    with pytest.raises(InsufficientData, match="unstable"):
        HarVolatility.fit(_candles(40 * 24, seed=8), 1, 24, measure="range")


def test_a_pooled_fit_is_the_least_squares_fit_of_every_series_rows_together():
    a, b = _candles(3000, seed=11), _candles(2200, seed=12) * 40  # another asset at another price level
    series, horizon = [(a, 2500), (b, None)], 6
    har = HarVolatility.fit_pooled(series, horizon, 24, **HarVolatility.for_bars(24))
    assert har.lags and har.season and har != HarVolatility.fit(a, horizon, 24, end=2500, **HarVolatility.for_bars(24))
    residuals, columns, ratios = [], [], []
    for bars, end in series:
        bars = bars[:end]
        r2 = np.diff(np.log(bars["close"].to_numpy()), prepend=np.nan) ** 2
        target = np.array([r2[t + 1:t + 1 + horizon].sum() if t + horizon < len(bars) else np.nan
                           for t in range(len(bars))])
        log_forecast = np.log(har.scale(bars) ** 2 / har.smear)
        keep = np.isfinite(log_forecast) & np.isfinite(target)
        residuals.append(np.log(target[keep] + har.floor) - log_forecast[keep])
        ratios.append(target[keep] / np.exp(log_forecast[keep]))
        columns.append(np.log(har.components(bars)[keep] + har.floor))
    e, X = np.concatenate(residuals), np.vstack(columns)
    assert len(e) > 3500  # the rows of both series, each up to its own end
    # least squares: the residuals of all rows together are orthogonal to the constant and every component
    assert abs(e.mean()) < 1e-6 and np.abs(X.T @ e / len(e)).max() < 1e-6
    assert har.smear == pytest.approx(np.mean(np.concatenate(ratios)), rel=1e-6)
