"""How strict the skill gate must be: candidate rules judged on the months after the training window.

For each cut date the global models are walk-forward evaluated on the core assets' rows whose
targets are realised by the cut, exactly as ``train_model.py --design global`` does (calendar folds,
the causally weighted ensemble of the members), then fitted on all of those rows and asked for every
row of the following ``--months``. Each rule picks the shrinkage k from the walk-forward predictions
alone; k x ensemble on the later rows is what serving would have scored. Prints, per cut and rule,
the mean and max MASE over the assets and how many are above / below 1.000, then the same pooled
over every cut. ``--market`` adds an equal-weighted market index of the assets as a further
context (its 1 h / 24 h returns and volatility) to measure that feature. Uses the store in
DATABASE_URL (ingest the shared CSVs first).

    .venv/bin/python -m bench.bench_gate [--timeframe 1h] [--cut 2023-06-30 ...] [--months 6] [--market]
"""

from __future__ import annotations

import json
import time

import click
import numpy as np
import pandas as pd

from crypto_predictor.cli.common import resolve_symbols, stored_assets
from crypto_predictor.config import Config
from crypto_predictor.datasets import GLOBAL_CONTEXT, MARKET, Dataset, build_dataset, market_candles
from crypto_predictor.market.store import CandleStore
from crypto_predictor.models import inverse_mse_weights
from crypto_predictor.training import skill_gate
from crypto_predictor.training.global_models import calendar_edges, global_fits
from crypto_predictor.training.scoring import DEFAULT_MEMBERS, TrainOptions, _ensemble_oos


def _rules(y, p, pos, fold, h) -> dict:
    """k per candidate rule, from the walk-forward rows only; the first is the gate training uses."""
    k, t, t_newer = skill_gate.best_shrink(y, p, h)
    k3 = k if t >= 3 else 0.0
    out = {"served (t>=5, newer t>=3)": skill_gate.shrink_factor(y, p, h)[0], "t>=3 (until now)": k3,
           "t>=4": k if t >= 4 else 0.0, "t>=5": k if t >= 5 else 0.0,
           "t>=4 + newer half t>=3": k if t >= 4 and t_newer >= 3 else 0.0}
    # The gated walk-forward record of the t >= 3 rule itself (folds after the first) must show skill.
    served = np.zeros(len(p))
    for f in np.unique(fold):
        here, known = fold == f, (pos + h <= pos[fold == f].min()) & (fold != f)
        kf, tf, _ = skill_gate.best_shrink(y[known], p[known], h)
        served[here] = (kf if tf >= 3 else 0.0) * p[here]
    later = fold > fold.min()
    record = (np.abs(y) - np.abs(y - served))[later][::h]
    out["t>=3 + served record t>=2"] = k3 if skill_gate.t_stat(record) >= 2 else 0.0
    out["t>=3 + gain in every fold"] = k3 if k3 and all(
        (np.abs(y[fold == f]) - np.abs(y[fold == f] - k3 * p[fold == f])).mean() > 0 for f in np.unique(fold)) else 0.0
    out["half of t>=3"] = k3 / 2
    return out


def _cut(datasets: dict, cut: pd.Timestamp, months: int, options: TrainOptions) -> dict:
    """asset -> {"y": later targets, "p": ensemble on them, "k": {rule: k}} for one cut date."""
    h = next(iter(datasets.values())).horizon
    step = next(iter(datasets.values())).step
    later_end = cut + pd.DateOffset(months=months)
    train, test = {}, {}
    for a, ds in datasets.items():
        keep = np.asarray(ds.X.index + h * step <= cut)
        if keep.sum() < 500:
            continue
        train[a] = Dataset(a, ds.timeframe, ds.bar, h, ds.X[keep], ds.y[keep], ds.close[keep], ds.context,
                           ds.sentiment, ds.candles[keep])
        test[a] = np.asarray((ds.X.index > cut) & (ds.X.index <= later_end))
    edges = calendar_edges(train, options.n_folds)
    oos, final = {}, {}
    for kind in options.members:
        started = time.perf_counter()
        found, fitted, _ = global_fits(train, [kind], options, edges)
        oos[kind], final[kind] = found[kind], fitted[kind]
        click.echo(f"  {cut.date()} {kind}: {time.perf_counter() - started:.0f} s", err=True)
    out = {}
    for a, ds in train.items():
        if a not in oos[options.members[0]] or not test[a].any():
            continue
        index = oos[options.members[0]][a].index
        pos = pd.Series(ds.X.index.get_indexer(index), index=index)
        fold = pd.Series(np.searchsorted(edges, index, side="right") - 1, index=index)
        y = ds.y.loc[index]
        members = {k: oos[k][a] for k in options.members}
        ens, _ = _ensemble_oos(members, y, fold, h, pos)
        w = inverse_mse_weights(y.to_numpy(), np.column_stack([members[k].to_numpy() for k in options.members]))
        X_later = datasets[a].X[test[a]]
        p_later = np.column_stack([np.asarray(final[k].predict(X_later), float) for k in options.members]) @ w
        out[a] = {"y": datasets[a].y[test[a]].to_numpy(), "p": p_later,
                  "k": _rules(y.to_numpy(), ens.to_numpy(), pos.to_numpy(), fold.to_numpy(), h)}
    return out


def _mase(y, served) -> float:
    return float(np.abs(y - served).mean() / np.abs(y).mean())


def _table(label: str, cuts: dict) -> list[dict]:
    rules = list(next(iter(next(iter(cuts.values())).values()))["k"])
    rows = []
    for rule in rules + ["ungated ensemble"]:
        mases = [_mase(r["y"], (1.0 if rule == "ungated ensemble" else r["k"][rule]) * r["p"])
                 for per_asset in cuts.values() for r in per_asset.values()]
        kept = sum(rule == "ungated ensemble" or r["k"][rule] > 0 for per_asset in cuts.values() for r in per_asset.values())
        m = np.array(mases)
        rows.append({"cut": label, "rule": rule, "pairs": len(m), "kept": kept, "mean": m.mean(), "max": m.max(),
                     "above_1": int((m > 1).sum()), "below_1": int((m < 1).sum())})
        click.echo(f"{label:<12}{rule:<30}{len(m):>6}{kept:>6}{m.mean():>9.5f}{m.max():>9.5f}"
                   f"{int((m > 1).sum()):>7}{int((m < 1).sum()):>7}")
    return rows


@click.command()
@click.option("--symbol", "symbols", multiple=True, default=("all",), help="Assets ('all' = core assets stored).")
@click.option("--timeframe", default="1h", show_default=True)
@click.option("--cut", "cuts", multiple=True, default=("2022-06-30", "2022-12-31", "2023-06-30"), show_default=True)
@click.option("--months", type=int, default=6, show_default=True, help="Months after each cut that are scored.")
@click.option("--members", default=",".join(DEFAULT_MEMBERS), show_default=True)
@click.option("--market", is_flag=True, help="Add the market index of the assets as context.")
@click.option("--json", "json_out", default=None)
def main(symbols, timeframe, cuts, months, members, market, json_out):
    store = CandleStore(Config().DATABASE_URL)
    assets = resolve_symbols(symbols, stored_assets(store))
    options = TrainOptions(members=tuple(m for m in members.split(",") if m), design="global")
    frames = {MARKET: market_candles(store, assets)} if market else None
    started = time.perf_counter()
    datasets = {a: build_dataset(store, a, timeframe, context_assets=GLOBAL_CONTEXT, context_frames=frames)
                for a in assets}
    click.echo(f"{len(datasets)} datasets, {len(next(iter(datasets.values())).X.columns)} columns, "
               f"{time.perf_counter() - started:.0f} s", err=True)
    results = {c: _cut(datasets, pd.Timestamp(c, tz="UTC"), months, options) for c in cuts}
    click.echo(f"{'cut':<12}{'rule':<30}{'pairs':>6}{'kept':>6}{'mean':>9}{'max':>9}{'>1':>7}{'<1':>7}")
    rows = [row for c in cuts for row in _table(c, {c: results[c]})]
    rows += _table("all cuts", results)
    click.echo(f"{timeframe}, {months} months after each cut, market context {'on' if market else 'off'}, "
               f"wall {time.perf_counter() - started:.0f} s")
    if json_out:
        with open(json_out, "w") as fh:
            json.dump(rows, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
