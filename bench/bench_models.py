"""Fit time and one-row predict latency of every model kind at full settings.

Prints figures; it is not a test. Data: ~35,000 hourly BTC candles turned into
40 simple past-only features (lagged returns, rolling sums and volatilities,
volume deviations), target the next hour's log return, chronological 80/20
split. The serving budget is the ensemble's one-row latency: under 3 ms.

    .venv/bin/python -m bench.bench_models [--data-dir DIR] [--pair BTCUSDT] [--calls 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crypto_predictor.models import KINDS, EnsembleModel

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "../shared/data/ohlcv"


def realish_features(path: Path, n_features: int = 40):
    candles = pd.read_csv(path)
    close = np.log(candles["close"].to_numpy(float))
    ret = pd.Series(np.diff(close, prepend=close[0]))
    volume = pd.Series(np.log1p(candles["volume"].to_numpy(float)))
    columns = [ret.shift(k) for k in range(10)]
    for w in (3, 6, 12, 24, 48, 96, 168, 336):
        columns += [ret.rolling(w).sum(), ret.rolling(w).std()]
    columns += [volume - volume.rolling(w).mean() for w in (6, 24, 168)]
    columns += [volume.diff(k) for k in range(1, n_features - len(columns) + 1)]
    X = pd.concat(columns, axis=1).to_numpy(float)[:, :n_features]
    y = pd.Series(close).shift(-1).to_numpy() - close
    ok = np.isfinite(X).all(axis=1) & np.isfinite(y)
    return X[ok], y[ok]


def latency_ms(fn, calls: int) -> tuple[float, float]:
    for _ in range(10):  # warm-up: first calls trace / allocate
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("CRYPTO_PREDICTOR_DATA_DIR", DEFAULT_DIR))
    parser.add_argument("--pair", default="BTCUSDT")
    parser.add_argument("--calls", type=int, default=300, help="timed one-row predictions per kind")
    args = parser.parse_args()

    X, y = realish_features(Path(args.data_dir) / f"{args.pair}-1h.csv.gz")
    split = int(len(X) * 0.8)
    X_fit, y_fit, X_test, y_test = X[:split], y[:split], X[split:], y[split:]
    print(f"data: {args.pair} {X.shape[0]} rows x {X.shape[1]} features; fit on {split}, test on {len(X_test)}")
    print(f"{'kind':<14}{'fit s':>8}{'mse/naive':>11}{'1-row ms (median / p99)':>26}{'predict(X[-1:]) ms':>20}")

    naive = float(np.mean(y_test**2))
    fitted = {}
    for kind, cls in KINDS.items():
        start = time.perf_counter()
        model = cls().fit(X_fit, y_fit)
        fit_s = time.perf_counter() - start
        fitted[kind] = model
        score = float(np.mean((model.predict(X_test) - y_test) ** 2)) / naive
        tail = X_test[-model.context_rows :]
        med, p99 = latency_ms(lambda: model.predict_last(tail), args.calls)
        plain, _ = latency_ms(lambda: model.predict(X_test[-1:]), args.calls // 3)
        print(f"{kind:<14}{fit_s:>8.2f}{score:>11.4f}{f'{med:.3f} / {p99:.3f}':>26}{plain:>20.3f}")
        if kind == "ensemble":
            print("  ensemble weights:", {k: round(v, 3) for k, v in model.member_weights().items()})

    members = [fitted[k] for k in ("linear", "random_forest", "xgboost", "lstm")]
    reused = EnsembleModel.from_fitted(members, fitted["ensemble"].weights_)
    tail = X_test[-reused.context_rows :]
    med, p99 = latency_ms(lambda: reused.predict_last(tail), args.calls)
    print(f"ensemble of the members above (from_fitted): one-row {med:.3f} ms median, {p99:.3f} ms p99"
          f" -> {'within' if med < 3 else 'OVER'} the 3 ms budget")


if __name__ == "__main__":
    main()
