"""7d and 30d on daily or on hourly bars: the global models' walk-forward on the pooled core assets.

Daily bars (what training uses) have horizons of 7 / 30 rows; hourly bars of 168 / 720 overlapping
rows, 24x as many to fit. Both are scored on the same targets: a daily row of day D (its close
is D's last hourly close) and the hourly row of D 23:00 predict the same log return. Folds are
the global models' calendar blocks of the daily datasets, purged by the horizon for both. Prints
per timeframe and bar the ensemble's and each member's MASE (mean over assets), direction, the
served forecast's MASE after the skill gate, and fit seconds. Uses the store in DATABASE_URL.

    .venv/bin/python -m bench.bench_bars [--timeframe 7d --timeframe 30d] [--members linear,xgboost]
"""

from __future__ import annotations

import time

import click
import numpy as np
import pandas as pd

from crypto_predictor.cli.common import resolve_symbols, stored_assets
from crypto_predictor.config import Config
from crypto_predictor.datasets import GLOBAL_CONTEXT, build_dataset
from crypto_predictor.market.store import CandleStore
from crypto_predictor.training.global_models import calendar_edges, global_fits
from crypto_predictor.training.scoring import DEFAULT_MEMBERS, TrainOptions, _ensemble_oos
from crypto_predictor.training.skill_gate import gated_predictions

DAY_CLOSE = pd.Timedelta(hours=23)  # the hourly row whose close is the daily bar's close


def _scored(datasets: dict, edges, options: TrainOptions, keep) -> tuple[dict, dict]:
    """asset -> {kind or "ensemble" or "served": (y, prediction) on the rows ``keep(asset, index)``}, fit s."""
    h = next(iter(datasets.values())).horizon
    oos, seconds = {}, {}
    for kind in options.members:
        started = time.perf_counter()
        oos[kind] = global_fits(datasets, [kind], options, edges)[0][kind]
        seconds[kind] = time.perf_counter() - started
    out = {}
    for a, ds in datasets.items():
        if a not in oos[options.members[0]]:
            continue
        index = oos[options.members[0]][a].index
        y = ds.y.loc[index]
        pos = pd.Series(ds.X.index.get_indexer(index), index=index)
        fold = pd.Series(np.searchsorted(edges, index, side="right") - 1, index=index)
        members = {k: oos[k][a] for k in options.members}
        ens, _ = _ensemble_oos(members, y, fold, h, pos)
        served, _ = gated_predictions(y, ens, pos, fold, h)
        rows = keep(a, index)
        out[a] = {k: (y.to_numpy()[rows], v.to_numpy()[rows]) for k, v in members.items()}
        out[a]["ensemble"] = (y.to_numpy()[rows], ens.to_numpy()[rows])
        out[a]["served"] = (y.to_numpy()[rows], served[rows])
    return out, seconds


def _report(tf: str, bar: str, scored: dict, seconds: dict, rows: int) -> None:
    for kind in list(next(iter(scored.values()))):
        mase = [np.abs(y - p).mean() / np.abs(y).mean() for y, p in (s[kind] for s in scored.values())]
        da = [np.mean(np.sign(p) == np.sign(y)) for y, p in (s[kind] for s in scored.values()) if kind != "served"]
        click.echo(f"{tf:<5}{bar:<5}{kind:<15}{len(mase):>7}{np.mean(mase):>9.4f}{np.max(mase):>9.4f}"
                   f"{(np.mean(da) if da else float('nan')):>8.3f}{seconds.get(kind, 0):>8.0f}{rows:>10}")


@click.command()
@click.option("--symbol", "symbols", multiple=True, default=("all",))
@click.option("--timeframe", "timeframes", multiple=True, default=("7d", "30d"), show_default=True)
@click.option("--members", default=",".join(DEFAULT_MEMBERS), show_default=True)
def main(symbols, timeframes, members):
    store = CandleStore(Config().DATABASE_URL)
    assets = resolve_symbols(symbols, stored_assets(store))
    options = TrainOptions(members=tuple(m for m in members.split(",") if m), design="global")
    click.echo(f"{'tf':<5}{'bar':<5}{'forecast':<15}{'assets':>7}{'MASE':>9}{'max':>9}{'dir':>8}{'fit s':>8}{'rows':>10}")
    for tf in timeframes:
        daily = {a: build_dataset(store, a, tf, context_assets=GLOBAL_CONTEXT) for a in assets}
        edges = calendar_edges(daily, options.n_folds)
        days = {a: set(ds.X.index) for a, ds in daily.items()}
        scored, seconds = _scored(daily, edges, options, lambda a, index: np.ones(len(index), bool))
        _report(tf, "1d", scored, seconds, sum(len(ds.y) for ds in daily.values()))
        del daily
        hourly = {a: build_dataset(store, a, tf, context_assets=GLOBAL_CONTEXT, bar="1h") for a in assets}
        scored, seconds = _scored(hourly, edges, options,
                                  lambda a, index, days=days: np.asarray((index - DAY_CLOSE).isin(days[a])))
        _report(tf, "1h", scored, seconds, sum(len(ds.y) for ds in hourly.values()))


if __name__ == "__main__":
    main()
