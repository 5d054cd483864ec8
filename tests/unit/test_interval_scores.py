"""Interval scores, the interval baselines, conditional coverage and the direction probability's Brier score."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crypto_predictor.training.baselines import BASELINES, quantile_baseline, static_baseline
from crypto_predictor.training.metrics import block_se, direction_scores, interval_score, metrics, vol_terciles
from crypto_predictor.training.walk_forward import backtest, walk_forward_splits
from tests.support.synthetic import garch_returns


def test_interval_score_by_hand():
    # 80% interval (alpha 0.2, penalty 2 / 0.2 = 10): inside, 0.5 below, 1.0 above
    y = np.array([0.0, -1.5, 2.0])
    lower, upper = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])
    assert interval_score(y, lower, upper, 0.2).tolist() == pytest.approx([2.0, 2.0 + 10 * 0.5, 2.0 + 10 * 1.0])
    row = metrics(y, np.zeros(3), lower80=lower, upper80=upper)
    assert row["interval_score_80"] == pytest.approx((2 + 7 + 12) / 3)
    assert row["coverage_80"] == pytest.approx(1 / 3) and math.isnan(row["interval_score_95"])


def test_coverage_standard_error_counts_runs_of_misses():
    rng = np.random.default_rng(5)
    independent = (rng.random(20_000) < 0.8).astype(float)
    binomial = math.sqrt(0.8 * 0.2 / len(independent))
    assert 0.6 * binomial < block_se(independent) < 1.6 * binomial
    # the same hit rate in runs of 100 rows (overlapping targets, volatility clusters): far less known
    runs = np.repeat(independent[:200], 100)
    assert block_se(runs, horizon=20) > 4 * binomial
    # blocks must span 5 horizons: 100 rows of 30-row targets give no figure rather than a false one
    assert math.isnan(block_se(independent[:100], horizon=30))


def test_metrics_report_the_coverage_standard_error_overall_and_per_third():
    rng = np.random.default_rng(6)
    y = rng.standard_normal(3000)
    bound = np.full(3000, 1.2816)  # the central 80% of N(0, 1)
    row = metrics(y, np.zeros(3000), lower80=-bound, upper80=bound, tercile=np.arange(3000) % 3, horizon=1)
    assert abs(row["coverage_80"] - 0.8) < 3 * row["coverage_80_se"]
    assert row["coverage_80_se"] == pytest.approx(math.sqrt(0.16 / 3000), rel=0.4)
    assert all(se > row["coverage_80_se"] for se in row["coverage_80_by_vol_se"])  # a third has a third of the rows
    assert math.isnan(row["coverage_95_se"])  # no 95% bounds given


class Zero:
    """The no-change forecast as a 'model': the intervals alone differ between the rows compared."""

    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.zeros(len(X))


def test_volatility_scaled_intervals_beat_the_static_baseline_where_volatility_clusters():
    returns, close = garch_returns(7000, seed=3)
    y = np.append(returns[1:], np.nan)[:-1]  # row t's target: the next row's return
    X = np.zeros((len(y), 1))
    res = backtest(Zero, X, y, horizon=1, n_folds=3, min_train=2500, price=close[:-1])
    rows = {row["model"]: row for row in res.summary}
    assert set(BASELINES) <= set(rows)
    scaled, static = rows["model"], rows["baseline_static"]
    assert scaled["coverage_n_80"] == static["coverage_n_80"]  # scored on the same rows
    # static intervals over-cover calm thirds and under-cover wild ones; scaled ones hold in each
    assert static["coverage_80_by_vol"][0] > 0.88 and static["coverage_80_by_vol"][2] < 0.72
    assert all(abs(c - 0.80) < 0.06 for c in scaled["coverage_80_by_vol"])
    assert sum(scaled["n_by_vol"]) == len(res.predictions)
    assert scaled["interval_score_80"] < 0.95 * static["interval_score_80"]
    assert scaled["interval_score_95"] < 0.95 * static["interval_score_95"]


def test_baselines_use_only_returns_known_at_prediction_time():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(600)
    horizon, window = 5, 50
    splits = walk_forward_splits(600, 2, horizon, 390)  # test rows 396..497 and 498..599
    positions = np.concatenate([test for _, test in splits])
    quant = quantile_baseline(y, positions, horizon, window, (0.8,))
    static = static_baseline(y, positions, splits, horizon, (0.8,))
    changed = y.copy()
    changed[480:] += 100.0  # the future of row 480 (its own return is known only at 485)
    q2 = quantile_baseline(changed, positions, horizon, window, (0.8,))
    s2 = static_baseline(changed, positions, splits, horizon, (0.8,))
    upto = positions < 485  # rows whose known returns all precede position 480
    assert np.array_equal(quant["upper80"][upto], q2["upper80"][upto])
    assert not np.array_equal(quant["upper80"][~upto], q2["upper80"][~upto])
    # by hand: the 10% / 90% quantiles of the latest 50 returns known at row 450 (rows 396..445)
    at = np.flatnonzero(positions == 450)[0]
    assert quant["lower80"][at] == pytest.approx(np.quantile(y[396:446], 0.1))
    assert quant["upper80"][at] == pytest.approx(np.quantile(y[396:446], 0.9))
    # static: each fold's interval from every return known before its first test row
    (_, first), (_, second) = splits
    assert static["upper80"][positions == first[0]][0] == pytest.approx(np.quantile(y[:first[0] - horizon + 1], 0.9))
    assert np.array_equal(static["upper80"][np.isin(positions, first)], s2["upper80"][np.isin(positions, first)])
    assert not np.array_equal(static["upper80"][np.isin(positions, second)], s2["upper80"][np.isin(positions, second)])
    assert np.unique(static["lower80"][np.isin(positions, second)]).size == 1


def test_brier_and_reliability_of_a_calibrated_and_a_miscalibrated_probability():
    rng = np.random.default_rng(1)
    n = 40000
    p = rng.uniform(0.3, 0.8, n)  # chance that the predicted direction is right
    y_pred = np.ones(n)
    y_true = np.where(rng.uniform(size=n) < p, 1.0, -1.0)  # right with probability p
    good = direction_scores(y_true, y_pred, p)
    overconfident = direction_scores(y_true, y_pred, np.clip(0.5 + 3.0 * (p - 0.5), 0.02, 0.98))
    coin = direction_scores(y_true, y_pred, np.full(n, 0.5))
    assert coin["brier"] == pytest.approx(0.25)
    assert good["brier"] < 0.25 < overconfident["brier"]
    assert abs(good["reliability_slope"] - 1.0) < 0.08 and overconfident["reliability_slope"] < 0.6
    table = good["reliability"]
    assert len(table) == 10 and sum(b["n"] for b in table) == n == good["brier_n"]
    for b in table:
        if b["n"] > 1000:
            assert abs(b["observed"] - b["predicted"]) < 0.03
    assert table[0]["n"] == 0 and table[0]["observed"] is None  # nothing predicted below 0.1
    # no direction, no score: a prediction of exactly 0 is left out
    assert direction_scores(y_true, np.zeros(n), np.full(n, 0.5))["brier_n"] == 0


def test_vol_terciles_split_rows_in_thirds_and_mark_unknown():
    groups = vol_terciles(np.array([np.nan, 1, 2, 3, 4, 5, 6]))
    assert groups.tolist() == [-1, 0, 0, 1, 1, 2, 2]
