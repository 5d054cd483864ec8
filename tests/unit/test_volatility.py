"""The HAR variance forecast that scales the intervals: causal fit, honest forecasts, stored state."""

from __future__ import annotations

import numpy as np
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
    from crypto_predictor.calibration import DirectionCalibrator
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
