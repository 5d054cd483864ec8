"""Walk-forward splits, metrics, rolling conformal intervals, direction calibration, backtest."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from crypto_predictor.calibration import (RollingConformal, causal_volatility, conformal_offsets, level_key,
                                          rolling_intervals)
from crypto_predictor.confidence import DirectionCalibrator
from crypto_predictor.errors import InvalidInput, NotFittedError
from crypto_predictor.training.walk_forward import backtest, walk_forward_splits
from crypto_predictor.training.metrics import evaluate_predictions, metrics, naive_forecast

# ---------------------------------------------------------------- splits


@pytest.mark.parametrize("horizon", [0, 1, 24])
@pytest.mark.parametrize("expanding", [True, False])
def test_splits_are_chronological_purged_and_cover_the_tail(horizon, expanding):
    n, n_folds, min_train = 1000, 4, 300
    splits = walk_forward_splits(n, n_folds, horizon, min_train, expanding=expanding)
    assert len(splits) == n_folds
    assert splits[-1][1][-1] == n - 1  # folds end at the last row
    prev_test_end = None
    for train, test in splits:
        assert np.all(np.diff(train) == 1) and np.all(np.diff(test) == 1)  # ordered, contiguous
        assert not set(train) & set(test)
        assert test[0] - train[-1] - 1 >= horizon  # purge gap
        assert train[-1] + horizon < test[0]  # no train target window reaches a test row
        assert len(train) >= min_train
        if prev_test_end is not None:
            assert test[0] == prev_test_end + 1  # test folds tile the tail without overlap
        prev_test_end = test[-1]
        if expanding:
            assert train[0] == 0
        else:
            assert len(train) == min_train
    # expanding windows grow, rolling windows slide
    assert len(splits[-1][0]) > len(splits[0][0]) if expanding else splits[-1][0][0] > splits[0][0][0]


def test_splits_respect_test_size_and_max_train():
    splits = walk_forward_splits(500, 3, 5, 100, test_size=50, max_train=150)
    assert [len(te) for _, te in splits] == [50, 50, 50]
    assert splits[0][1][0] == 350
    assert all(len(tr) == 150 for tr, _ in splits)
    assert splits[0][0][-1] == 350 - 5 - 1


def test_splits_reject_too_short_series_and_bad_arguments():
    with pytest.raises(InvalidInput, match="too short"):
        walk_forward_splits(100, 5, 24, 80)
    with pytest.raises(InvalidInput, match="too short"):
        walk_forward_splits(200, 2, 1, 100, test_size=60)
    with pytest.raises(InvalidInput):
        walk_forward_splits(1000, 0, 1, 100)
    with pytest.raises(InvalidInput):
        walk_forward_splits(1000, 2, 1, 100, max_train=50)


# ---------------------------------------------------------------- metrics

Y = np.array([0.01, -0.02, 0.03, -0.01])
P = np.array([0.02, -0.01, 0.01, 0.0])


def test_metrics_match_hand_computation():
    m = metrics(Y, P)
    assert m["n"] == 4
    assert m["mae"] == pytest.approx(0.05 / 4)  # |errors| = .01 .01 .02 .01
    assert m["naive_mae"] == pytest.approx(0.07 / 4)
    assert m["mase"] == pytest.approx(0.05 / 0.07)
    assert m["rmse"] == pytest.approx(math.sqrt(7e-4 / 4))
    assert m["r2_oos"] == pytest.approx(1 - 7e-4 / 15e-4)
    # signs agree on rows 0-2; the 0 prediction on row 3 calls no direction and scores 0.5
    assert m["directional_accuracy"] == pytest.approx(3.5 / 4)


def test_naive_forecast_scores_mase_one_and_coin_flip_direction():
    assert np.array_equal(naive_forecast(3), np.zeros(3))
    m = metrics(Y, naive_forecast(len(Y)))
    assert m["mase"] == 1.0 and m["r2_oos"] == 0.0 and m["directional_accuracy"] == 0.5


def test_zero_realised_returns_have_no_direction():
    m = metrics([0.0, 0.01, -0.01], [0.5, 0.01, 0.01])
    assert m["directional_n"] == 2 and m["directional_accuracy"] == 0.5


def test_top_decile_uses_confidence_then_abs_prediction():
    y = np.ones(20)
    pred = np.full(20, 0.1)
    pred[[3, 7]] = -0.5  # the two largest |predictions| are wrong
    m = metrics(y, pred)
    assert m["top_decile_n"] == 2 and m["top_decile_directional_accuracy"] == 0.0
    conf = np.full(20, 0.5)
    conf[[0, 1]] = 0.9  # the two most confident calls are right
    m = metrics(y, pred, confidence=conf)
    assert m["top_decile_directional_accuracy"] == 1.0
    assert m["directional_accuracy"] == pytest.approx(18 / 20)


def test_interval_metrics_skip_rows_without_bounds():
    y = np.array([0.0, 0.1, -0.1, 0.3])
    lo = np.array([-0.2, -0.2, np.nan, -0.2])
    hi = np.array([0.2, 0.2, np.nan, 0.2])
    m = metrics(y, np.zeros(4), lower80=lo, upper80=hi, price=[100, 100, 100, 200])
    assert m["coverage_n_80"] == 3 and m["coverage_80"] == pytest.approx(2 / 3)
    assert m["interval_width_80"] == pytest.approx(0.4)
    rel = math.exp(0.2) - math.exp(-0.2)
    assert m["interval_width_80_rel"] == pytest.approx(rel)
    assert m["interval_width_80_price"] == pytest.approx(rel * 400 / 3)
    assert math.isnan(m["coverage_95"]) and m["coverage_n_95"] == 0


def test_metrics_reject_bad_input():
    with pytest.raises(InvalidInput):
        metrics([], [])
    with pytest.raises(InvalidInput):
        metrics([0.1, np.nan], [0.0, 0.0])
    with pytest.raises(InvalidInput):
        metrics([0.1, 0.2], [0.0])


def test_evaluate_predictions_always_includes_naive():
    rows = evaluate_predictions(Y, P, name="ridge")
    assert [r["model"] for r in rows] == ["ridge", "naive"]
    assert rows[1]["mase"] == 1.0 and rows[0]["mase"] < 1.0


# ---------------------------------------------------------------- conformal


def test_conformal_offsets_use_finite_sample_rank():
    off = conformal_offsets(np.arange(1, 10) * np.array([1, -1] * 4 + [1]), levels=(0.8, 0.95))
    assert off[0.8] == (-8.0, 8.0)  # ceil(10 * 0.8) = 8th smallest |r|
    assert off[0.95] == (-math.inf, math.inf)  # ceil(10 * 0.95) = 10 > 9 residuals
    asym = conformal_offsets(np.arange(-4, 5), levels=(0.8,), symmetric=False)
    assert asym[0.8] == (-4.0, 4.0)  # floor(10 * .1) = 1st and ceil(10 * .9) = 9th


def _reference_interval(pos, res, t, pred, h, window, level):
    known = res[pos + h <= t][-window:]
    k = math.ceil((len(known) + 1) * level - 1e-9)
    q = np.sort(np.abs(known))[k - 1]
    return pred - q, pred + q


def test_rolling_intervals_match_reference_and_use_only_realised_residuals():
    rng = np.random.default_rng(1)
    pos = np.arange(400)
    res = rng.standard_t(4, size=400)
    h, window = 5, 60
    iv = rolling_intervals(pos, res, pos, np.zeros(400), h, window, levels=(0.8,), min_history=30)
    for t in (40, 100, 250, 399):
        lo, hi = _reference_interval(pos, res, t, 0.0, h, window, 0.8)
        assert iv["lower80"][t] == pytest.approx(lo) and iv["upper80"][t] == pytest.approx(hi)
    assert np.array_equal(iv["n_history"], np.clip(pos - h + 1, 0, window))
    assert np.all(np.isnan(iv["lower80"][: 30 + h - 1])) and not np.isnan(iv["lower80"][30 + h - 1])


def test_rolling_intervals_equal_conformal_offsets_on_every_row_with_gaps_and_unreachable_levels():
    rng = np.random.default_rng(4)
    n, h, window = 500, 3, 120
    pos = np.arange(n)
    res = rng.standard_t(3, size=n)
    res[rng.choice(n, 25, replace=False)] = np.nan  # unrealised or missing scores are skipped
    scale = np.abs(rng.standard_normal(n)) + 0.2
    levels = (0.5, 0.8, 0.995)  # 0.995 needs more than 120 scores: infinite
    iv = rolling_intervals(pos, res, pos, np.zeros(n), h, window, levels, 20, True, res_scale=scale, query_scale=scale)
    for t in range(n):
        win = (res / scale)[max(0, t - h + 1 - window):max(0, t - h + 1)]
        win = win[np.isfinite(win)]
        assert iv["n_history"][t] == len(win)
        if len(win) < 20:
            assert np.isnan(iv["lower80"][t])
            continue
        for lv, (lo, hi) in conformal_offsets(win, levels, True).items():
            assert iv[f"lower{level_key(lv)}"][t] == lo * scale[t] and iv[f"upper{level_key(lv)}"][t] == hi * scale[t]
        assert iv["error_scale"][t] == pytest.approx(np.mean(np.abs(win)) * scale[t], rel=1e-12)
    assert np.isinf(iv["upper99_5"][-1])


def test_residual_is_unused_before_it_is_realised():
    rng = np.random.default_rng(2)
    n, h, t = 300, 24, 250
    y, pred = rng.normal(size=n), rng.normal(scale=0.1, size=n)
    conf = RollingConformal(window=100, horizon=h, min_history=50)
    base = conf.batch(np.arange(n), y, pred)
    y_future = y.copy()
    y_future[t - h + 1:] += 100.0  # outcomes not yet known at t (and later rows)
    moved = conf.batch(np.arange(n), y_future, pred)
    for key in ("lower80", "upper80", "lower95", "upper95", "error_scale"):
        assert moved[key][t] == base[key][t]
    y_known = y.copy()
    y_known[t - h] += 100.0  # realised exactly at t
    assert conf.batch(np.arange(n), y_known, pred)["error_scale"][t] > base["error_scale"][t]


@pytest.mark.parametrize("dist", ["normal", "student_t3"])
def test_iid_noise_coverage_is_within_three_points(dist):
    rng = np.random.default_rng(3)
    n = 6000
    y = rng.normal(size=n) if dist == "normal" else rng.standard_t(3, size=n)
    iv = RollingConformal(window=500, horizon=1).batch(np.arange(n), y, np.zeros(n))
    ok = np.isfinite(iv["lower80"])
    cov80 = np.mean((y[ok] >= iv["lower80"][ok]) & (y[ok] <= iv["upper80"][ok]))
    cov95 = np.mean((y[ok] >= iv["lower95"][ok]) & (y[ok] <= iv["upper95"][ok]))
    assert abs(cov80 - 0.80) <= 0.03 and abs(cov95 - 0.95) <= 0.03


def test_volatility_normalisation_keeps_coverage_after_a_regime_change():
    rng = np.random.default_rng(4)
    n = 4000
    sigma = np.where(np.arange(n) < 2000, 0.01, 0.04)
    y = rng.normal(size=n) * sigma
    after = slice(2000, 2300)  # the first 300 rows of the agitated regime
    raw = RollingConformal(window=720).batch(np.arange(n), y, np.zeros(n))
    norm = RollingConformal(window=720, vol_span=24).batch(np.arange(n), y, np.zeros(n), scale=sigma)
    cover = lambda iv: np.mean((y[after] >= iv["lower80"][after]) & (y[after] <= iv["upper80"][after]))  # noqa: E731
    assert cover(raw) < 0.6  # stale quantiles from the calm regime
    assert abs(cover(norm) - 0.80) <= 0.06
    with pytest.raises(InvalidInput, match="normalised"):
        RollingConformal(vol_span=24).batch(np.arange(n), y, np.zeros(n))


def test_serving_interval_matches_batch_for_the_same_history():
    rng = np.random.default_rng(5)
    n, h = 500, 3
    y, pred = rng.normal(size=n), rng.normal(scale=0.1, size=n)
    conf = RollingConformal(window=200, horizon=h)
    t = n - 1
    batch = conf.batch(np.arange(n), y, pred)
    realised = (y - pred)[: t - h + 1]
    live = conf.interval(pred[t], realised)
    for key in ("lower80", "upper80", "lower95", "upper95", "error_scale"):
        assert live[key] == pytest.approx(batch[key][t])
    with pytest.raises(InvalidInput, match="at least"):
        conf.interval(0.0, realised[:10])


def test_causal_volatility_ignores_the_future_and_scales_with_horizon():
    rng = np.random.default_rng(6)
    close = 100 * np.exp(np.cumsum(rng.normal(scale=0.01, size=300)))
    vol = causal_volatility(close, horizon=1, span=24)
    changed = close.copy()
    changed[200:] *= 1.5
    assert np.allclose(causal_volatility(changed, 1, 24)[:200], vol[:200], equal_nan=True)
    assert np.allclose(causal_volatility(close, 24, 24)[50:], vol[50:] * math.sqrt(24))
    assert np.isnan(vol[0]) and 0.005 < vol[-1] < 0.02


def test_for_horizon_settings():
    assert (RollingConformal.for_horizon(1).window, RollingConformal.for_horizon(1).vol_span) == (720, 24)
    assert RollingConformal.for_horizon(24).vol_span == 72
    long = RollingConformal.for_horizon(168)
    assert long.window == 2016 and long.vol_span is None
    assert RollingConformal.for_horizon(1, normalise=False).vol_span is None


# ---------------------------------------------------------------- direction calibration


def test_calibrator_is_monotone_and_learns_strength():
    rng = np.random.default_rng(7)
    score = rng.uniform(0, 3, size=5000)
    correct = (rng.uniform(size=5000) < 0.5 + 0.1 * np.minimum(score, 2)).astype(float)
    cal = DirectionCalibrator().fit(score, correct)
    p = cal.predict_proba(np.linspace(0, 5, 200))
    assert np.all(np.diff(p) >= 0)
    assert 0.45 < p[0] < 0.56 and p[-1] > 0.65
    assert cal.predict_proba([np.nan])[0] == pytest.approx(cal.base_rate_)
    state = json.loads(json.dumps(cal.to_state()))  # what a bundle stores
    assert np.array_equal(DirectionCalibrator.from_state(state).predict_proba([0.0, 1.0, 4.0]),
                          cal.predict_proba([0.0, 1.0, 4.0]))


def test_calibrator_falls_back_to_base_rate():
    rng = np.random.default_rng(8)
    score = rng.uniform(0, 3, size=3000)
    worse = (rng.uniform(size=3000) < 0.7 - 0.1 * score).astype(float)  # strength hurts: slope clipped
    p = DirectionCalibrator().fit(score, worse).predict_proba([0.0, 1.0, 3.0])
    assert np.ptp(p) == 0.0
    few = DirectionCalibrator(min_points=200).fit(score[:50], worse[:50])
    assert few.predict_proba([2.0])[0] == pytest.approx((worse[:50].sum() + 1) / 52)
    assert DirectionCalibrator().fit([], []).predict_proba([1.0])[0] == 0.5
    # overlapping 24h outcomes: 3000 rows are only 125 effective observations
    assert DirectionCalibrator(horizon=24).fit(score, worse).slope_ == 0.0
    with pytest.raises(NotFittedError):
        DirectionCalibrator().predict_proba([1.0])
    with pytest.raises(InvalidInput, match="isotonic"):
        DirectionCalibrator(method="isotonic")
    with pytest.raises(InvalidInput):
        DirectionCalibrator().fit([1.0, 2.0], [0.0, 0.3])


# ---------------------------------------------------------------- backtest


class SpyRidge:
    """Ridge that records what it was trained on, to check purging."""

    seen: list = []

    def fit(self, X, y):
        SpyRidge.seen.append(np.asarray(X)[:, -1].astype(int))
        self.model_ = Ridge(alpha=1.0).fit(np.asarray(X)[:, :-1], y)
        return self

    def predict(self, X):
        return self.model_.predict(np.asarray(X)[:, :-1])


def _synthetic(n, h, seed=9):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    steps = rng.normal(size=n + h)
    # forward sums of h steps: neighbouring targets share h-1 steps, like h-hour log returns
    noise = np.convolve(steps, np.ones(h), mode="valid")[:n] / math.sqrt(h)
    y = 0.5 * X[:, 0] + noise
    return np.column_stack([X, np.arange(n)]), y


@pytest.mark.parametrize("h", [1, 24])
def test_backtest_with_ridge_is_causal_and_beats_naive(h):
    SpyRidge.seen = []
    X, y = _synthetic(3000, h)
    res = backtest(SpyRidge, X, y, horizon=h, n_folds=5, min_train=500)
    preds = res.predictions
    assert len(res.folds) == 5 and len(SpyRidge.seen) == 5
    for rows, fold in zip(SpyRidge.seen, res.folds):
        assert rows.max() + h < fold["test_start"]  # purged
    assert np.array_equal(preds["position"], np.arange(3000 - len(preds), 3000))
    model, naive = res.summary[:2]
    assert naive["model"] == "naive" and naive["mase"] == 1.0
    assert model["mase"] < 0.97 and model["directional_accuracy"] > 0.55
    assert all(f["mase"] < 1.0 for f in res.folds)
    # warm-up: rows without min_history known residuals have no interval and are counted
    assert res.n_without_interval == res.conformal.min_history + h - 1
    assert model["coverage_n_80"] == len(preds) - res.n_without_interval
    tol = 0.04 if h == 1 else 0.08  # overlapping targets: fewer independent outcomes
    assert abs(model["coverage_80"] - 0.80) <= tol and abs(model["coverage_95"] - 0.95) <= tol
    # confidence: fold 0 has no realised history -> 0.5; later folds use a fitted calibrator
    assert np.all(preds.loc[preds.fold == 0, "confidence"] == 0.5)
    later = preds[preds.fold > 0]
    order = later.sort_values("score")
    assert np.all(np.diff(order.loc[order.fold == 4, "confidence"]) >= -1e-12)
    assert model["top_decile_directional_accuracy"] >= model["directional_accuracy"] - 0.02


def test_backtest_normalises_with_price_and_refuses_missing_inputs():
    X, y = _synthetic(2000, 1)
    price = 100 * np.exp(np.cumsum(y * 0.01))
    res = backtest(lambda: Ridge(), X[:, :-1], y, horizon=1, n_folds=3, min_train=500, price=price)
    assert res.conformal.vol_span == 24 and "interval_width_80_price" in res.summary[0]
    with pytest.raises(InvalidInput, match="price"):
        backtest(lambda: Ridge(), X, y, horizon=1, n_folds=3, min_train=500,
                 conformal=RollingConformal(vol_span=24))
    with pytest.raises(InvalidInput, match="finite"):
        backtest(lambda: Ridge(), X, np.append(y[:-1], np.nan), horizon=1, n_folds=3, min_train=500)
