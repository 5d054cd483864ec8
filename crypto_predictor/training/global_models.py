"""Global models: one model per (timeframe, kind) fitted on the pooled rows of many assets.

Every asset's rows carry the same columns: its own features (returns, ratios, oscillators and
volatilities, comparable across assets) and the same cross-asset context
(``datasets.GLOBAL_CONTEXT``: bitcoin's and ethereum's returns and volatility). Walk-forward folds
are calendar blocks shared by all assets: the second half of the pooled period in ``n_folds``
equal blocks; fold k's model is fitted on every asset's rows whose targets are realised before
block k starts (a purge gap of the horizon), then predicts every asset's rows in block k. An
asset too young to have trained anything is still predicted, which is how a new or short-history
asset gets a forecast. Each asset's out-of-sample predictions then go through the same scoring
as per-pair models (``scoring.score_pair``: intervals, confidence, the ensemble, the skill gate),
so the two designs are judged by one rule. The intervals' HAR variance model is pooled too: one fit
over every asset's rows before the first block (``pooled_har``), so a young asset's intervals get
the same model as the rest instead of an EWMA.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from crypto_predictor.datasets import GLOBAL_CONTEXT, Dataset, build_dataset
from crypto_predictor.errors import InsufficientData, InvalidInput
from crypto_predictor.market.sentiment import stored_series
from crypto_predictor.market.store import CandleStore
from crypto_predictor.storage.engine import shareable_url
from crypto_predictor.training.fanout import LocalFanout
from crypto_predictor.training.scoring import (
    BASE_KINDS, Skipped, TrainOptions, _Replay, base_kinds, har_for, make_model, save_pair, score_pair)

# The LSTM is a per-pair kind: one network over every asset's sequences is left to measure later.
GLOBAL_KINDS = tuple(k for k in BASE_KINDS if k != "lstm")


def _any(datasets: dict) -> Dataset:
    """One of the datasets: they share timeframe, bar and horizon."""
    return next(iter(datasets.values()))


def calendar_edges(datasets: dict, n_folds: int) -> pd.DatetimeIndex:
    """Starts of the ``n_folds`` test blocks and the end (exclusive) of the last one."""
    start = min(ds.X.index[0] for ds in datasets.values())
    end = max(ds.X.index[-1] for ds in datasets.values())
    return pd.DatetimeIndex(list(pd.date_range(start + (end - start) / 2, end, periods=n_folds + 1)[:-1])
                            + [end + _any(datasets).step])


def _train_mask(ds: Dataset, block_start: pd.Timestamp) -> np.ndarray:
    """Rows whose targets are realised before the block starts (the purge gap of the horizon)."""
    return np.asarray(ds.X.index < block_start - ds.horizon * ds.step)


def asset_splits(ds: Dataset, edges: pd.DatetimeIndex) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) of one asset on the shared calendar folds; blocks it has no rows in are left out."""
    index = ds.X.index
    splits = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        test = np.flatnonzero((index >= lo) & (index < hi))
        if len(test):
            splits.append((np.flatnonzero(_train_mask(ds, lo)), test))
    return splits


def _pooled(datasets: dict, masks: dict) -> tuple[pd.DataFrame, np.ndarray]:
    X = pd.concat([ds.X[masks[a]] for a, ds in datasets.items()], ignore_index=True)
    y = np.concatenate([ds.y.to_numpy()[masks[a]] for a, ds in datasets.items()])
    return X, y


def _check_rows(datasets: dict, kind: str, edges) -> None:
    for lo in edges[:-1]:
        n = sum(int(_train_mask(ds, lo).sum()) for ds in datasets.values())
        if n < 50:
            raise InsufficientData(f"{kind}: only {n} pooled rows before {lo.isoformat()}; ingest more history")


def _fit_task(datasets: dict, kind: str, options: TrainOptions, lo, hi):
    """One independent fit: a walk-forward fold (rows realised before ``lo``, predicting [lo, hi)), or
    with ``lo`` None the final model on every row. Runs wherever the fan-out sends it."""
    started = time.perf_counter()
    if lo is None:
        X, y = _pooled(datasets, {a: np.ones(len(ds.y), bool) for a, ds in datasets.items()})
        return make_model(kind, options, _any(datasets).horizon).fit(X, y), time.perf_counter() - started
    X, y = _pooled(datasets, {a: _train_mask(ds, lo) for a, ds in datasets.items()})
    model = make_model(kind, options, _any(datasets).horizon).fit(X, y)
    seconds = time.perf_counter() - started
    out = {}
    for a, ds in datasets.items():
        test = (ds.X.index >= lo) & (ds.X.index < hi)
        if test.any():
            out[a] = pd.Series(np.asarray(model.predict(ds.X[test]), dtype=float), index=ds.X.index[test])
    return out, seconds


def global_fits(datasets: dict, kinds, options: TrainOptions, edges, fanout=None,
                shared=None) -> tuple[dict, dict, dict]:
    """Every (kind, fold) fit and each kind's final fit, as independent tasks of ``fanout`` (default: in
    this process); returns (kind -> asset -> out-of-sample Series, kind -> final model, kind -> seconds)."""
    for kind in kinds:
        _check_rows(datasets, kind, edges)
    fanout = fanout or LocalFanout(1)
    shared = fanout.share(datasets) if shared is None else shared
    folds = list(zip(edges[:-1], edges[1:]))
    tasks = [(shared, kind, options, lo, hi) for kind in kinds for lo, hi in folds]
    tasks += [(shared, kind, options, None, None) for kind in kinds]
    done = fanout.map(_fit_task, tasks, local_processes=False)
    oos, fitted, seconds = {}, {}, {}
    for i, kind in enumerate(kinds):
        parts = done[i * len(folds):(i + 1) * len(folds)]
        fitted[kind], final_seconds = done[len(kinds) * len(folds) + i]
        per_asset = {}
        for predictions, _ in parts:
            for a, series in predictions.items():
                per_asset.setdefault(a, []).append(series)
        oos[kind] = {a: pd.concat(series) for a, series in per_asset.items()}
        per_fold = [s for _, s in parts]
        seconds[kind] = {"folds": per_fold, "total": sum(per_fold) + final_seconds}
    return oos, fitted, seconds


DATASET_CHUNK = 8  # assets per dataset task: ~0.1 s each, so a task outweighs its scheduling


class _ContextMemo:
    """The store, loading each context asset's candles once for all the assets of a task."""

    def __init__(self, store):
        self.store, self.memo = store, {}

    def load(self, asset, interval="1h", start=None, end=None):
        if asset not in GLOBAL_CONTEXT:
            return self.store.load(asset, interval, start, end)
        key = (asset, interval, start, end)
        if key not in self.memo:
            self.memo[key] = self.store.load(asset, interval, start, end)
        return self.memo[key]


def _dataset_task(store_or_url, assets, timeframe: str, options: TrainOptions, sentiment) -> tuple[list, float]:
    """(Datasets or Skipped, seconds) of some assets, read from the store: here, in a process or on a worker."""
    started = time.perf_counter()
    store = _ContextMemo(CandleStore(store_or_url) if isinstance(store_or_url, str) else store_or_url)
    out = []
    for asset in assets:
        try:
            out.append(build_dataset(store, asset, timeframe, days=options.days, end=options.end,
                                     context_assets=GLOBAL_CONTEXT, sentiment=sentiment))
        except InsufficientData as exc:
            out.append(Skipped(asset, timeframe, exc.message))
    return out, time.perf_counter() - started


def _datasets(store, assets, timeframe: str, options: TrainOptions, fanout=None) -> tuple[dict, list, list]:
    """``global_datasets`` and the seconds of each of its tasks."""
    sentiment = stored_series(store.engine) if options.sentiment else None
    url = shareable_url(store.engine) if fanout is not None else None
    assets = list(assets)
    if url is None:
        done = [_dataset_task(store, assets, timeframe, options, sentiment)]
    else:
        chunks = [assets[i:i + DATASET_CHUNK] for i in range(0, len(assets), DATASET_CHUNK)]
        done = fanout.map(_dataset_task, [(url, c, timeframe, options, sentiment) for c in chunks])
    built = [x for part, _ in done for x in part]
    datasets = {x.asset: x for x in built if not isinstance(x, Skipped)}
    columns = {tuple(ds.X.columns) for ds in datasets.values()}
    if len(columns) > 1 or (datasets and set(GLOBAL_CONTEXT) - set(_any(datasets).context)):
        raise InvalidInput(f"global models need the candles of {', '.join(GLOBAL_CONTEXT)} for the same period "
                           "as the assets: ingest them")
    return datasets, [x for x in built if isinstance(x, Skipped)], [seconds for _, seconds in done]


def global_datasets(store, assets, timeframe: str, options: TrainOptions, fanout=None) -> tuple[dict, list]:
    """(asset -> Dataset on the global columns, [Skipped]) for the assets with enough rows. With a
    ``fanout`` and a database other processes can open, chunks of assets are built as its tasks."""
    datasets, skipped, _ = _datasets(store, assets, timeframe, options, fanout)
    return datasets, skipped


def pooled_har(datasets: dict, edges: pd.DatetimeIndex):
    """One HAR variance model for every asset (``scoring.har_for``), fitted on the rows of all of them
    whose targets are realised before the first test block; None where none is fitted."""
    return har_for(_any(datasets), [(ds.candles, int(np.searchsorted(ds.X.index, edges[0])))
                                    for ds in datasets.values() if ds.candles is not None])


def _score_task(data, asset: str, predictions: dict, options: TrainOptions, edges, kinds, har=None):
    """Score one asset on its out-of-sample predictions (``data``: its Dataset, or the shared dict of all)."""
    ds = data[asset] if isinstance(data, dict) else data
    return score_pair(ds, options, None, lambda kind: (lambda t=predictions[kind]: _Replay(t)), lambda kind: None,
                      splits=asset_splits(ds, edges), kinds=kinds, har=har)


def _task_data(fanout, shared, datasets: dict, asset: str):
    """What a scoring task gets: on Dask the scattered datasets (by reference), locally the asset's own."""
    return shared if fanout is not None and fanout.kind == "dask" else datasets[asset]


def train_global(store, assets, timeframe: str, options: TrainOptions, out_dir_for=None,
                 fanout=None) -> tuple[list, list, dict]:
    """Train one timeframe's global models over ``assets``; returns ([PairResult], [Skipped], info).

    Assets with too few rows come back as Skipped (all of them, when none has enough).
    ``out_dir_for(asset)``: where each asset's files go (None: write nothing). Each asset's
    directory holds the global models (the same files for every asset) and its own calibration.
    ``fanout`` (``training.fanout``): where the fits run; the files are written here either way.
    """
    started = time.perf_counter()
    datasets, skipped, dataset_tasks = _datasets(store, assets, timeframe, options, fanout)
    build_seconds = time.perf_counter() - started
    if not datasets:
        return [], skipped, {"design": "global", "assets": []}
    kinds = [k for k in base_kinds(options) if k in GLOBAL_KINDS]
    if not kinds:
        raise InvalidInput(f"global models are {', '.join(GLOBAL_KINDS)} (and their ensemble); got "
                           f"{', '.join(options.kinds)}")
    edges = calendar_edges(datasets, 2 if options.quick else options.n_folds)
    started = time.perf_counter()
    shared_datasets = fanout.share(datasets) if fanout is not None and fanout.kind == "dask" else None
    oos, fitted, fit_seconds = global_fits(datasets, kinds, options, edges, fanout, shared=shared_datasets)
    fit_phase = time.perf_counter() - started
    results = []
    scored = [a for a in datasets if a in oos[kinds[0]]]
    skipped += [Skipped(a, timeframe, f"{a} {timeframe}: no rows in the walk-forward period")
                for a in datasets if a not in oos[kinds[0]]]
    # Each asset's scoring (intervals, ensemble, gate) is a task of its own; its files are written here.
    started = time.perf_counter()
    har = pooled_har(datasets, edges)
    tasks = [(_task_data(fanout, shared_datasets, datasets, a), a, {k: oos[k][a] for k in kinds}, options, edges,
              kinds, har) for a in scored]
    for asset, result in zip(scored, (fanout or LocalFanout(1)).map(_score_task, tasks)):
        if out_dir_for is not None:
            save_pair(result, out_dir_for(asset), fitted)
        result.design = "global"
        results.append(result)
    score_phase = time.perf_counter() - started
    info = {"design": "global", "assets": sorted(datasets), "kinds": kinds, "fold_edges": [e.isoformat() for e in edges],
            "rows": int(sum(len(ds.y) for ds in datasets.values())), "fit_seconds": fit_seconds,
            # wall times of the phases: against the tasks' own seconds, what the fan-out gains
            "dataset_seconds": build_seconds, "dataset_task_seconds": dataset_tasks,
            "fit_phase_seconds": fit_phase, "score_phase_seconds": score_phase}
    return results, skipped, info
