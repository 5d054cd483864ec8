"""Training runs: per-pair or global models for many (asset, timeframe) pairs, into one new bundle.

Per-pair models (``train_pair``) are fitted on one asset's rows: locally a process per pair, on
Dask a task per (asset, timeframe, kind) fit (``training.fanout``; the LSTM, ~6x the others, no
longer holds up its pair's other kinds), then a task per pair scores it by replaying those
predictions. Global models (``global_models.train_global``) are fitted on the pooled rows of every
asset, one timeframe at a time. Both are scored by ``scoring.score_pair`` and written through one
``BundleWriter``, whose manifest records the metrics, the design of each timeframe and what was
skipped.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from crypto_predictor.datasets import GLOBAL_CONTEXT, build_dataset
from crypto_predictor.errors import InsufficientData
from crypto_predictor.market.sentiment import stored_series
from crypto_predictor.market.store import CandleStore
from crypto_predictor.registry.artifacts import PAIR_FILE, write_pair
from crypto_predictor.registry.bundle import BundleWriter
from crypto_predictor.registry.store import open_model_store
from crypto_predictor.storage.engine import TaskUrl
from crypto_predictor.training.fanout import LocalFanout
from crypto_predictor.training.scoring import (  # noqa: F401  (re-exported: the CLIs and tests import them here)
    ALL_KINDS, AUTO_DESIGN, AUTO_EVIDENCE, BASE_KINDS, DEFAULT_KINDS, DEFAULT_MEMBERS, PairResult, Skipped,
    TrainOptions, _Replay, base_kinds, expand_kinds, kind_predictions, make_model, score_pair)


def _dataset(store, asset: str, timeframe: str, options: TrainOptions):
    return build_dataset(store, asset, timeframe, days=options.days, end=options.end,
                         sentiment=stored_series(store.engine) if options.sentiment else None)


def train_pair(store, asset: str, timeframe: str, options: TrainOptions, out_dir: Path | None,
               fitted: dict | None = None) -> PairResult:
    """Evaluate, fit and (when ``out_dir`` is given) save every requested kind for one pair. ``fitted``:
    kind -> (out-of-sample predictions, final model, seconds) from kind tasks, replayed instead of fitted here."""
    ds = _dataset(store, asset, timeframe, options)
    if fitted is None:
        return score_pair(ds, options, out_dir, lambda kind: lambda: make_model(kind, options, ds.horizon),
                          lambda kind: make_model(kind, options, ds.horizon).fit(ds.X, ds.y))
    result = score_pair(ds, options, out_dir, lambda kind: (lambda t=fitted[kind][0]: _Replay(t)),
                        lambda kind: fitted[kind][1])
    for kind, (_, _, seconds) in fitted.items():
        result.seconds[kind] += seconds  # the fits themselves ran in the kind's task
    return result


def _kind_job(database_url: str, asset: str, timeframe: str, options: TrainOptions, kind: str):
    """One (asset, timeframe, kind): its walk-forward predictions and its final model, or Skipped."""
    started = time.perf_counter()
    try:
        ds = _dataset(CandleStore(database_url), asset, timeframe, options)
    except InsufficientData as exc:
        return Skipped(asset, timeframe, exc.message)
    predictions = kind_predictions(ds, options, kind)
    final = make_model(kind, options, ds.horizon).fit(ds.X, ds.y)
    return predictions, final, time.perf_counter() - started


def _train_job(database_url: str, asset: str, timeframe: str, options: TrainOptions, out_dir: str, fitted=None):
    """One (asset, timeframe) in a worker process: its own store connection, its own files."""
    out = Path(out_dir)
    try:
        result = train_pair(CandleStore(database_url), asset, timeframe, options, out, fitted)
    except InsufficientData as exc:
        shutil.rmtree(out, ignore_errors=True)
        return Skipped(asset, timeframe, exc.message)
    return _with_pair_file(result, out)


def _train_job_anywhere(database_url: str, asset: str, timeframe: str, options: TrainOptions, fitted=None):
    """``_train_job`` on a machine that cannot see the bundle: the pair's files come back as bytes, for
    the client to write."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cp-pair-") as tmp:
        result = _train_job(database_url, asset, timeframe, options, tmp, fitted)
        files = {} if isinstance(result, Skipped) else {f: (Path(tmp) / f).read_bytes() for f in result.files}
    return result, files


def _write_files(out: Path, files: dict) -> None:
    for name, data in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _fitted_kinds(database_url: str, pairs, options: TrainOptions, fanout) -> tuple[dict, list]:
    """Every (asset, timeframe, kind) fit as a task of its own: (pair -> kind -> fitted, [Skipped])."""
    kinds = base_kinds(options)
    keys = [(a, t, k) for a, t in pairs for k in kinds]
    fitted, skipped = {}, {}
    for (a, t, k), done in zip(keys, fanout.map(_kind_job, [(database_url, a, t, options, k) for a, t, k in keys])):
        if isinstance(done, Skipped):
            skipped[(a, t)] = done
        else:
            fitted.setdefault((a, t), {})[k] = done
    return {p: f for p, f in fitted.items() if p not in skipped}, list(skipped.values())


def _pair_jobs(database_url: str, pairs, options: TrainOptions, writer, fanout):
    """Per-pair trainings. Locally one process per pair, fitting its kinds and writing into the bundle:
    on this 2-core machine a task per kind measured 15-20% slower (each builds the dataset again, and
    the models travel to the scoring task). On Dask each (asset, timeframe, kind) fit is a task, so the
    slow LSTM runs beside its pair's other kinds, and each pair's scoring task returns its files."""
    if fanout.kind == "local":
        yield from fanout.imap_unordered(_train_job, [
            (database_url, a, t, options, str(writer.path_for(a, t, PAIR_FILE).parent)) for a, t in pairs])
        return
    fitted, skipped = _fitted_kinds(database_url, pairs, options, fanout) if pairs else ({}, [])
    yield from skipped
    for result, files in fanout.imap_unordered(_train_job_anywhere,
                                               [(database_url, a, t, options, f) for (a, t), f in fitted.items()]):
        if not isinstance(result, Skipped):
            _write_files(writer.path_for(result.asset, result.timeframe, PAIR_FILE).parent, files)
        yield result


def _with_pair_file(result: PairResult, out: Path) -> PairResult:
    meta = {"asset": result.asset, "timeframe": result.timeframe, "bar": result.bar, "horizon": result.horizon,
            "features": result.features, "context": result.context, "data_range": list(result.data_range),
            "n_rows": result.n_rows, "kinds": result.kinds, "design": result.design}
    result.files.append(write_pair(out, meta))
    return result


def _global_jobs(database_url: str, assets, timeframes, options: TrainOptions, writer, info: dict, fanout=None):
    """Each timeframe's global models (``training.global_models``), one timeframe after another: the
    pooled fits use every core themselves."""
    from crypto_predictor.training.global_models import train_global  # late: per-pair runs never need it

    store = CandleStore(database_url)
    for tf in timeframes:
        try:
            results, skipped, info[tf] = train_global(store, assets, tf, options,
                                                      lambda a, tf=tf: writer.path_for(a, tf, PAIR_FILE).parent,
                                                      fanout=fanout)
        except InsufficientData as exc:
            yield from (Skipped(a, tf, exc.message) for a in assets)
            continue
        yield from skipped
        yield from (_with_pair_file(r, writer.path_for(r.asset, tf, PAIR_FILE).parent) for r in results)


def design_for(options: TrainOptions, timeframe: str, stored=None) -> str:
    """"pair" or "global" for one timeframe: as asked, or with "auto" whichever measured better; auto
    falls back to pair when the global models' context assets are not all in ``stored``."""
    if options.design != "auto":
        return options.design
    design = AUTO_DESIGN.get(timeframe, "pair")
    if design == "global" and stored is not None and not set(GLOBAL_CONTEXT) <= set(stored):
        return "pair"
    return design


def metrics_tables(results: list[PairResult]) -> dict:
    """Manifest metrics: overall[asset][timeframe][kind] (naive included) and per-fold rows."""
    overall, folds, seconds = {}, {}, {}
    for r in results:
        overall.setdefault(r.asset, {})[r.timeframe] = r.summary
        folds.setdefault(r.asset, {})[r.timeframe] = r.folds
        seconds.setdefault(r.asset, {})[r.timeframe] = r.seconds
    return {"overall": overall, "folds": folds, "train_seconds": seconds}


def train_run(database_url: str, assets, timeframes, options: TrainOptions, models_dir, n_jobs: int = 2,
              on_done=None, extra=None, store=None, fanout=None) -> tuple[str, list[PairResult]]:
    """Train every (asset, timeframe) in parallel into one new bundle; returns (version, results).

    Pairs with too little history are skipped (``on_done`` receives a Skipped; the manifest lists
    them); the run fails only when nothing could be trained. ``extra`` adds keys to the manifest's
    ``extra`` (e.g. why a retrain ran), sealed with the bundle. The version is allocated in and
    pushed to ``store`` (default: ``models_dir``'s, shared when MODEL_STORE_URL is set). ``fanout``
    (``training.fanout``): where the fits run (default: ``n_jobs`` local processes for per-pair
    trainings, this process for the pooled global fits); the bundle is written here either way.
    """
    from itertools import chain

    database_url = TaskUrl(database_url)  # it travels in the tasks' arguments
    fanout = fanout or LocalFanout(n_jobs)
    stored = CandleStore(database_url).assets() if options.design == "auto" else None
    global_tfs = [t for t in timeframes if design_for(options, t, stored) == "global"]
    pairs = [(a, t) for a in assets for t in timeframes if t not in global_tfs]
    designs = {}
    store = open_model_store(models_dir) if store is None else store
    with BundleWriter(store=store) as writer:
        done = chain(_global_jobs(database_url, assets, global_tfs, options, writer, designs, fanout),
                     _pair_jobs(database_url, pairs, options, writer, fanout))
        results, skipped = [], []
        for result in done:
            (skipped if isinstance(result, Skipped) else results).append(result)
            if on_done is not None:
                on_done(result)
        if not results:
            raise InsufficientData("nothing to train: " + "; ".join(s.reason for s in skipped))
        results.sort(key=lambda r: (r.asset, r.timeframe))
        first, last = min(r.data_range[0] for r in results), max(r.data_range[1] for r in results)
        writer.finalize(
            assets=sorted({r.asset for r in results}), timeframes=list(timeframes),
            kinds=[k for k in options.kinds if any(k in r.kinds for r in results)],
            features=list(dict.fromkeys(f for r in results for f in r.features)),
            data_range={"start": first, "end": last, "days": options.days, "end_limit": options.end},
            metrics=metrics_tables(results),
            extra={**(extra or {}),
                   "quick": options.quick, "seed": options.seed, "members": list(options.members),
                   "n_folds": 2 if options.quick else options.n_folds,
                   "bars": {r.timeframe: r.bar for r in results},
                   "pairs": {f"{r.asset}/{r.timeframe}": {"bar": r.bar, "horizon": r.horizon, "rows": r.n_rows,
                                                          "context": r.context, "data_range": r.data_range}
                             for r in results},
                   "skipped": {f"{s.asset}/{s.timeframe}": s.reason for s in skipped},
                   "design": {tf: {**designs.get(tf, {"design": "pair"}), "chosen": options.design,
                                   **({"evidence": AUTO_EVIDENCE[tf]} if options.design == "auto" and tf in AUTO_EVIDENCE
                                      else {})} for tf in timeframes}},
        )
    store.publish(writer.version)  # a failure leaves the sealed local bundle: deploy_model.py --push retries
    return writer.version, results
