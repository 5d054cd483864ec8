"""What an explanation costs: exact TreeSHAP in numpy (``models/tree_shap.py``) against xgboost's own
``pred_contribs``, for the default-size tree kinds, and the whole ensemble explanation a worker computes
once per (version, asset, timeframe, candle).

Synthetic features (40 columns, 20,000 rows: the size of a pair's training set), default parameters.

    .venv/bin/python -m bench.bench_explain [--rows 20000] [--repeat 20]
"""

from __future__ import annotations

import statistics
import time

import click
import numpy as np


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


@click.command()
@click.option("--rows", default=20_000, show_default=True)
@click.option("--repeat", default=20, show_default=True)
def main(rows, repeat):
    import xgboost

    from crypto_predictor.models import EnsembleModel, RandomForestModel, XGBoostModel
    from crypto_predictor.models.contributions import contributions
    from crypto_predictor.models.tree_shap import TreeShap

    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 40))
    y = 0.01 * X[:, 0] + 0.005 * np.tanh(X[:, 1] * X[:, 2]) + 0.02 * rng.normal(size=rows)
    row = X[-1:]
    print(f"{'model':<28} {'build ms':>9} {'numpy ms':>9} {'xgboost ms':>11} {'max |diff|':>11}")
    for model in (XGBoostModel(), RandomForestModel()):
        model.fit(X, y)
        raw = bytes(model.booster_.save_raw("json"))
        started = time.perf_counter()
        shap = TreeShap(raw)
        build = 1000 * (time.perf_counter() - started)
        ours = _median_ms(lambda: shap.contributions(row[0]), repeat)
        matrix = xgboost.DMatrix(row)
        theirs = _median_ms(lambda: model.booster_.predict(matrix, pred_contribs=True), repeat)
        diff = np.abs(shap.contributions(row[0])[1] - model.booster_.predict(matrix, pred_contribs=True)[0, :-1]).max()
        label = f"{model.kind} (leaves {len(shap.values)})"
        print(f"{label:<28} {build:>9.1f} {ours:>9.2f} {theirs:>11.2f} {diff:>11.2e}")
    ensemble = EnsembleModel(members=("linear", "random_forest", "xgboost")).fit(X, y)
    contributions(ensemble, row)  # the first call builds the trees' paths
    total = _median_ms(lambda: contributions(ensemble, row), repeat)
    print(f"{'ensemble (3 members)':<28} {'':>9} {total:>9.2f}")


if __name__ == "__main__":
    main()
