"""Per-(asset, timeframe) models vs one global model across assets, walk-forward, same folds.

Prints MASE and directional accuracy per asset for both designs so the choice is measured,
not assumed. Uses the store in DATABASE_URL (ingest the shared CSVs first).

    .venv/bin/python -m bench.bench_global_vs_pair --timeframe 1h --kind xgboost
"""

from __future__ import annotations

import time

import click
import numpy as np
import pandas as pd

from crypto_predictor.config import Config
from crypto_predictor.datasets import build_dataset
from crypto_predictor.training.metrics import metrics
from crypto_predictor.market.store import CandleStore
from crypto_predictor.training.pipeline import TrainOptions, make_model


def _generic(X: pd.DataFrame) -> pd.DataFrame:
    """Context columns named after their asset become generic so assets share one column set."""
    return X.rename(columns=lambda c: "ctx_" + c.split("_", 2)[2] if c.startswith("ctx_") else c)


@click.command()
@click.option("--timeframe", default="1h", help="Timeframe to compare.")
@click.option("--kind", default="xgboost", help="Model kind (linear, random_forest, xgboost).")
@click.option("--symbol", "symbols", multiple=True,
              default=("bitcoin", "ethereum", "litecoin", "binancecoin", "cardano"), help="Assets.")
@click.option("--folds", default=3, help="Walk-forward folds over the common period.")
def main(timeframe, kind, symbols, folds):
    store = CandleStore(Config().DATABASE_URL)
    options = TrainOptions()
    data = {}
    for s in symbols:
        ds = build_dataset(store, s, timeframe)
        data[ds.asset] = (_generic(ds.X), ds.y, ds.horizon)
    horizon = next(iter(data.values()))[2]
    step = pd.Timedelta(hours=1 if timeframe in ("1h", "24h") else 24)
    # Folds over the period every asset covers, split by time so both designs see the same rows.
    start = max(X.index[0] for X, _, _ in data.values())
    end = min(X.index[-1] for X, _, _ in data.values())
    edges = pd.date_range(start + (end - start) / 2, end, periods=folds + 1)
    rows = {a: {"pair": [], "global": [], "y": []} for a in data}
    t_pair = t_global = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        cutoff = lo - horizon * step
        t0 = time.perf_counter()
        gX = pd.concat([X[X.index < cutoff] for X, _, _ in data.values()])
        gy = pd.concat([y[y.index < cutoff] for _, y, _ in data.values()])
        global_model = make_model(kind, options, horizon).fit(gX, gy)
        t_global += time.perf_counter() - t0
        for asset, (X, y, _) in data.items():
            test = (X.index >= lo) & (X.index < hi)
            t0 = time.perf_counter()
            pair_model = make_model(kind, options, horizon).fit(X[X.index < cutoff], y[y.index < cutoff])
            t_pair += time.perf_counter() - t0
            rows[asset]["pair"].append(pair_model.predict(X[test]))
            rows[asset]["global"].append(global_model.predict(X[test]))
            rows[asset]["y"].append(y[test].to_numpy())
    click.echo(f"{timeframe} {kind}: {folds} folds from {edges[0]:%Y-%m-%d} to {edges[-1]:%Y-%m-%d}; "
               f"fit seconds per-pair {t_pair:.1f}, global {t_global:.1f}")
    click.echo(f"{'asset':<12} {'n':>6} {'MASE pair':>10} {'MASE global':>12} {'dir pair':>9} {'dir global':>11}")
    for asset, r in rows.items():
        y = np.concatenate(r["y"])
        mp = metrics(y, np.concatenate(r["pair"]))
        mg = metrics(y, np.concatenate(r["global"]))
        click.echo(f"{asset:<12} {len(y):>6} {mp['mase']:>10.4f} {mg['mase']:>12.4f} "
                   f"{mp['directional_accuracy']:>9.3f} {mg['directional_accuracy']:>11.3f}")


if __name__ == "__main__":
    main()
