"""The LSTM's two inference engines: TensorFlow (after fit) vs numpy (after load).

Prints figures; it is not a test. Fits one full-size LSTM (lookback 24, units 32, 40
features from ``bench_models.realish_features``; few epochs: speed does not depend on
skill), saves it, and compares:

* agreement of ``predict`` between the fitted (TensorFlow) and loaded (numpy) model;
* ``predict_last`` latency: XLA single-window function vs numpy; batch ``predict`` time;
* a fresh process loading the saved model and making its first prediction: seconds,
  RSS / PSS, whether TensorFlow got imported. "tf" loads a copy without
  ``lstm_cell.npz``, i.e. the fallback path older bundles take.

    .venv/bin/python -m bench.bench_lstm_engines [--data-dir DIR] [--pair BTCUSDT] [--rows 8000] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_models import DEFAULT_DIR, realish_features
from crypto_predictor.models.lstm import CELL_FILE, LSTMModel

# A worker's view: one thread per library (gunicorn.conf.py sets the same).
THREADS = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                                  "TF_NUM_INTEROP_THREADS")}

CHILD = """
import json, sys, time
started = time.perf_counter()
import numpy as np
from crypto_predictor.models.lstm import LSTMModel
model = LSTMModel.load(sys.argv[1])
model.predict_last(np.zeros((model.context_rows, model.n_features_in_)))
seconds = time.perf_counter() - started
mem = {}
for line in open("/proc/self/smaps_rollup"):
    key, value = line.split(":", 1)
    if key in ("Rss", "Pss"):
        mem[key] = int(value.split()[0]) / 1024
print(json.dumps({"seconds": seconds, **mem, "tensorflow": "tensorflow" in sys.modules}))
"""


def latency(fn, calls: int) -> tuple[float, float]:
    for _ in range(50):
        fn()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return statistics.median(times) * 1e3, times[int(0.99 * (len(times) - 1))] * 1e3


def fresh_process(directory: Path) -> dict:
    env = {**os.environ, **THREADS, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(directory)], capture_output=True, text=True,
                         env=env, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("CRYPTO_PREDICTOR_DATA_DIR", DEFAULT_DIR)))
    parser.add_argument("--pair", default="BTCUSDT")
    parser.add_argument("--rows", type=int, default=8000, help="newest rows used (fit on 80%%)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    X, y = realish_features(args.data_dir / f"{args.pair}-1h.csv.gz")
    X, y = X[-args.rows :], y[-args.rows :]
    cut = int(0.8 * len(X))
    started = time.perf_counter()
    fitted = LSTMModel(lookback=24, units=32, epochs=args.epochs).fit(X[:cut], y[:cut])
    print(f"fit {cut} rows x {X.shape[1]} features, {args.epochs} epochs: {time.perf_counter() - started:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        numpy_dir, tf_dir = Path(tmp) / "numpy", Path(tmp) / "tf"
        fitted.save(numpy_dir)
        shutil.copytree(numpy_dir, tf_dir)
        (tf_dir / CELL_FILE).unlink()
        loaded = LSTMModel.load(numpy_dir)

        X_test = X[cut:]
        a, b = fitted.predict(X_test), loaded.predict(X_test)
        print(f"agreement on {len(X_test)} rows: max |tf - numpy| = {np.abs(a - b).max():.2e} "
              f"(predictions up to {np.abs(a).max():.2e})")

        window = X_test[-24:]
        for name, model in (("tf xla", fitted), ("numpy", loaded)):
            p50, p99 = latency(lambda m=model: m.predict_last(window), args.calls)
            t = time.perf_counter()
            model.predict(X_test)
            batch = time.perf_counter() - t
            print(f"{name:7s} predict_last p50 {p50:.3f} ms  p99 {p99:.3f} ms   "
                  f"predict({len(X_test)} rows) {batch * 1e3:.0f} ms")

        for name, directory in (("numpy", numpy_dir), ("tf", tf_dir)):
            stats = fresh_process(directory)
            print(f"fresh process, {name:5s}: import+load+first predict {stats['seconds']:.2f} s, "
                  f"RSS {stats['Rss']:.0f} MB, PSS {stats['Pss']:.0f} MB, tensorflow imported: {stats['tensorflow']}")


if __name__ == "__main__":
    main()
