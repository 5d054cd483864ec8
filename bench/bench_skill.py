"""Walk-forward skill of what is served: the gated forecast beside the best kind and naive, per pair.

Trains every (asset, timeframe) exactly as ``train_model.py`` would (``training.pipeline.train_pair``,
nothing written), in parallel, and prints per pair the served forecast's MASE, direction,
top-decile direction and coverage, the shrinkage factor the skill gate kept, the ensemble's and
the best kind's MASE, and seconds; then per timeframe how many pairs the served forecast keeps at
or below MASE 1.000, the interval scores and coverage against the baselines, and their standard errors
pooled over the pairs (``_pooled_se``). Uses the store in DATABASE_URL (ingest the shared CSVs first).

    .venv/bin/python -m bench.bench_skill [--symbol all] [--timeframe 24h ...] [--members linear,xgboost]
        [--design pair|global] [--folds own|calendar]

``--folds calendar`` scores per-pair models on exactly the test blocks of ``--design global`` (the
comparison of the two designs on the same folds).
"""

from __future__ import annotations

import json
import time

import click
import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from crypto_predictor.cli.common import resolve_symbols, stored_assets
from crypto_predictor.config import Config
from crypto_predictor.datasets import BAR_HOURS, build_dataset
from crypto_predictor.errors import InsufficientData
from crypto_predictor.market.store import CandleStore
from crypto_predictor.training.baselines import REFERENCE_ROWS
from crypto_predictor.training.global_models import asset_splits, calendar_edges, global_datasets, train_global
from crypto_predictor.training.pipeline import DEFAULT_MEMBERS, TrainOptions, make_model, score_pair, train_pair

MIN_TRAIN = 200  # rows a per-pair model needs before a calendar fold is scored for it
MIN_BLOCKS = 5  # calendar blocks a pooled coverage standard error needs


def _one(url: str, asset: str, timeframe: str, options: TrainOptions, edges=None):
    started = time.perf_counter()
    try:
        if edges is None:
            r = train_pair(CandleStore(url), asset, timeframe, options, None)
        else:
            r = _on_calendar(CandleStore(url), asset, timeframe, options, edges)
    except InsufficientData as exc:
        return {"asset": asset, "timeframe": timeframe, "skipped": exc.message}
    return _row(r, time.perf_counter() - started)


def _on_calendar(store, asset: str, timeframe: str, options: TrainOptions, edges):
    """A per-pair model scored on the global models' calendar folds (``--folds calendar``): same test
    blocks, same purge; blocks where the asset has under ``MIN_TRAIN`` rows to fit on are left out."""
    ds = build_dataset(store, asset, timeframe, days=options.days, end=options.end)
    splits = [(tr, te) for tr, te in asset_splits(ds, edges) if len(tr) >= MIN_TRAIN]
    if not splits:
        raise InsufficientData(f"{asset} {timeframe}: no calendar fold with {MIN_TRAIN} rows to fit on")
    return score_pair(ds, options, None, lambda kind: lambda: make_model(kind, options, ds.horizon),
                      lambda kind: make_model(kind, options, ds.horizon).fit(ds.X, ds.y), splits=splits)


def _calendar_edges(store, assets, timeframe: str, options: TrainOptions):
    """The fold edges ``--design global`` would use for these assets."""
    datasets, _ = global_datasets(store, assets, timeframe, options)
    return calendar_edges(datasets, 2 if options.quick else options.n_folds)


def _global(url: str, assets, timeframe: str, options: TrainOptions) -> list[dict]:
    """Every asset of one timeframe from one pooled fit per kind; wall time shared out per asset."""
    started = time.perf_counter()
    results, skipped, info = train_global(CandleStore(url), assets, timeframe, options)
    wall = time.perf_counter() - started
    click.echo(f"{timeframe} global: {info['rows']} pooled rows, fit seconds "
               + ", ".join(f"{k} {v['total']:.1f}" for k, v in info["fit_seconds"].items()) + f", wall {wall:.0f} s",
               err=True)
    return ([_row(r, wall / len(results)) for r in results]
            + [{"asset": s.asset, "timeframe": timeframe, "skipped": s.reason} for s in skipped])


def _row(r, wall: float) -> dict:
    asset, timeframe = r.asset, r.timeframe
    kinds = {k: v for k, v in r.summary.items() if k not in REFERENCE_ROWS + ("served",)}
    best = min(kinds, key=lambda k: kinds[k]["mase"])
    s = r.summary["served"]
    return {"asset": asset, "timeframe": timeframe, "n": s["n"], "served_mase": s["mase"], "shrink": s["shrink"],
            "served_da": s["directional_accuracy"], "served_top10": s["top_decile_directional_accuracy"],
            "cov80": s["coverage_80"], "cov95": s["coverage_95"],
            "ensemble_mase": (r.summary.get("ensemble") or {}).get("mase"), "best": best,
            "best_mase": kinds[best]["mase"], "best_da": kinds[best]["directional_accuracy"],
            "kind_mase": {k: v["mase"] for k, v in kinds.items()}, "seconds": r.seconds, "wall": wall,
            "design": r.design, "intervals": _intervals(r.summary), "block_days": _block_days(r),
            "_rows": r.served_rows}


def _block_days(r) -> int:
    """Calendar blocks of the pooled standard error: 30 days, or 5 horizons where those are longer."""
    return max(30, int(np.ceil(5 * r.horizon * BAR_HOURS[r.bar] / 24)))


def _pooled_se(done: list[dict]) -> dict:
    """Standard errors of the served figures over all these pairs' rows, by calendar blocks shared by
    every asset (a market-wide shock moves every asset's misses at once, so the assets are not
    independent samples): the coverage, overall and per volatility third, by batch means; the mean over
    pairs of the interval score over ``baseline_quantile``'s (on the rows both have), by the jackknife
    leaving one block out. {"blocks": n, "80" / "95": {"cov": [all, thirds], "ratio", "ratio_se"}}."""
    frames = {r["asset"]: r["_rows"] for r in done if r.get("_rows") is not None}
    if not frames:
        return {}
    rows = pd.concat(frames, names=["asset", "time"]).reset_index()
    rows["block"] = rows["time"].astype("datetime64[s, UTC]").astype("int64") // (86400 * done[0]["block_days"])
    out = {"blocks": int(rows["block"].nunique())}
    for key in ("80", "95"):
        parts = [rows[f"inside{key}"]] + [rows[f"inside{key}"].where(rows["tercile"] == g) for g in range(3)]
        cov = []
        for part in parts:
            means = part.groupby(rows["block"]).mean().dropna()
            cov.append(float(means.std(ddof=1) / np.sqrt(len(means))) if len(means) >= MIN_BLOCKS else float("nan"))
        sums = rows.groupby(["asset", "block"])[[f"is{key}", f"bq_is{key}"]].sum().unstack("block", fill_value=0.0)
        served, base = sums[f"is{key}"].to_numpy(), sums[f"bq_is{key}"].to_numpy()
        ratio = float(np.mean(served.sum(1) / base.sum(1)))
        left_out = np.mean((served.sum(1)[:, None] - served) / (base.sum(1)[:, None] - base), axis=0)
        n = len(left_out)
        se = float(np.sqrt((n - 1) / n * np.sum((left_out - left_out.mean()) ** 2))) if n >= MIN_BLOCKS else np.nan
        out[key] = {"cov": cov, "ratio": ratio, "ratio_se": se}
    return out


def _intervals(summary: dict) -> dict:
    """Interval score, coverage (overall and per volatility third) and Brier of served, naive and baselines."""
    fields = ("interval_score_80", "interval_score_95", "coverage_80", "coverage_95", "coverage_80_by_vol",
              "coverage_95_by_vol", "coverage_80_se", "coverage_95_se", "interval_width_80", "brier", "brier_n")
    return {name: {f: summary[name].get(f) for f in fields} for name in ("served",) + REFERENCE_ROWS if name in summary}


def _print(rows: list[dict]) -> None:
    click.echo(f"{'asset':<18}{'tf':<5}{'n':>7}{'served':>9}{'k':>6}{'dir':>7}{'top10':>7}{'cov80':>7}{'cov95':>7}"
               f"{'ens':>9}{'best':>15}{'secs':>7}")
    for r in rows:
        if "skipped" in r:
            click.echo(f"{r['asset']:<18}{r['timeframe']:<5} skipped: {r['skipped']}")
            continue
        ens = "-" if r["ensemble_mase"] is None else f"{r['ensemble_mase']:.4f}"
        click.echo(f"{r['asset']:<18}{r['timeframe']:<5}{r['n']:>7}{r['served_mase']:>9.4f}{r['shrink']:>6.2f}"
                   f"{r['served_da']:>7.3f}{r['served_top10']:>7.3f}{r['cov80']:>7.3f}{r['cov95']:>7.3f}{ens:>9}"
                   f"{r['best'][:6] + ' ' + format(r['best_mase'], '.4f'):>15}{r['wall']:>7.1f}")
    for tf in dict.fromkeys(r["timeframe"] for r in rows):
        done = [r for r in rows if r["timeframe"] == tf and "skipped" not in r]
        if not done:
            continue
        served = [r["served_mase"] for r in done]
        best = [r["best_mase"] for r in done]
        kept = sum(r["shrink"] > 0 for r in done)
        click.echo(f"{tf}: {len(done)} pairs; served MASE mean {sum(served) / len(served):.4f} max {max(served):.4f}, "
                   f"<= 1.000 in {sum(m <= 1.0 for m in served)}/{len(done)}; best kind mean "
                   f"{sum(best) / len(best):.4f} max {max(best):.4f}, <= 1 in {sum(m <= 1.0 for m in best)}; "
                   f"gate kept a model in {kept}")
        _print_intervals(tf, done)
        se = _pooled_se(done)
        if se:
            click.echo(f"  {tf} served standard errors, {se['blocks']} blocks of {done[0]['block_days']} days: "
                       + "  ".join(f"IS{key}/bq {se[key]['ratio']:.4f} +- {se[key]['ratio_se']:.4f}, cov{key} +- "
                                   f"{se[key]['cov'][0]:.4f} [{' '.join(f'{v:.4f}' for v in se[key]['cov'][1:])}]"
                                   for key in ("80", "95")))


def _mean(values) -> float:
    values = [v for v in values if v is not None and v == v]
    return sum(values) / len(values) if values else float("nan")


def _print_intervals(tf: str, done: list[dict]) -> None:
    """Per timeframe, means over pairs: interval scores relative to baseline_quantile (< 1 is sharper at
    honest coverage), coverage overall and per volatility third, Brier of the served direction."""
    for name in ("served", "naive", "baseline_quantile", "baseline_static"):
        rows = [r["intervals"][name] for r in done if name in r["intervals"]]
        if not rows:
            continue
        ratio = {lv: _mean(r["intervals"][name][f"interval_score_{lv}"] / r["intervals"]["baseline_quantile"][
            f"interval_score_{lv}"] for r in done) for lv in (80, 95)}
        terciles = {lv: [_mean(row[f"coverage_{lv}_by_vol"][g] for row in rows if row.get(f"coverage_{lv}_by_vol"))
                         for g in range(3)] for lv in (80, 95)}
        click.echo(f"  {tf} {name:<18} IS80/bq {ratio[80]:.3f} IS95/bq {ratio[95]:.3f}  cov80 "
                   f"{_mean(row['coverage_80'] for row in rows):.3f} [{' '.join(f'{c:.3f}' for c in terciles[80])}]"
                   f"  cov95 {_mean(row['coverage_95'] for row in rows):.3f} "
                   f"[{' '.join(f'{c:.3f}' for c in terciles[95])}]"
                   + (f"  brier {_mean(row['brier'] for row in rows):.4f}" if name == "served" else ""))


@click.command()
@click.option("--symbol", "symbols", multiple=True, default=("all",), help="Assets ('all' = core assets stored).")
@click.option("--timeframe", "timeframes", multiple=True, default=("1h", "24h", "7d", "30d"))
@click.option("--members", default=",".join(DEFAULT_MEMBERS), show_default=True, help="Ensemble members.")
@click.option("--days", type=int, default=None, help="Newest N days of rows only.")
@click.option("--end", default=None, help="Ignore candles after this ISO time.")
@click.option("--quick", is_flag=True)
@click.option("--design", type=click.Choice(["pair", "global"]), default="pair", show_default=True)
@click.option("--folds", type=click.Choice(["own", "calendar"]), default="own", show_default=True,
              help="Per-pair design: each asset's own folds, or the global models' calendar folds.")
@click.option("--jobs", type=int, default=2, show_default=True, help="Pairs in parallel (per-pair design).")
@click.option("--json", "json_out", default=None, help="Also write the rows to this file.")
def main(symbols, timeframes, members, days, end, quick, design, folds, jobs, json_out):
    url = Config().DATABASE_URL
    assets = resolve_symbols(symbols, stored_assets(CandleStore(url)))
    members = tuple(m.strip() for m in members.split(",") if m.strip())
    options = TrainOptions(kinds=members + ("ensemble",), members=members, quick=quick, days=days, end=end,
                           design=design)
    started = time.perf_counter()
    if design == "global":
        rows = [row for t in timeframes for row in _global(url, assets, t, options)]
    else:
        edges = {t: _calendar_edges(CandleStore(url), assets, t, options) if folds == "calendar" else None
                 for t in timeframes}
        rows = Parallel(n_jobs=jobs)(delayed(_one)(url, a, t, options, edges[t]) for a in assets for t in timeframes)
    _print(rows)
    click.echo(f"{len(rows)} pairs, {design} design, members {','.join(members)}, wall {time.perf_counter() - started:.0f} s")
    if json_out:
        with open(json_out, "w") as fh:
            json.dump([{k: v for k, v in r.items() if k != "_rows"} for r in rows], fh, indent=1)


if __name__ == "__main__":
    main()
