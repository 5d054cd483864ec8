"""Global models: one model per (timeframe, kind) over the pooled rows of several assets, on shared
calendar folds, serving an asset with only weeks of history.

Slices of the shared candles: bitcoin, ethereum and litecoin for the 90 days before DATA_END,
ALGO (a universe asset) for the last 25 days only.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from crypto_predictor.config import TestConfig
from crypto_predictor.datasets import GLOBAL_CONTEXT, build_dataset
from crypto_predictor.errors import InvalidInput
from crypto_predictor.market.store import CandleStore
from crypto_predictor.registry.aliases import set_alias
from crypto_predictor.registry.bundle import load_manifest
from crypto_predictor.serving.service import PredictionService
from crypto_predictor.training import global_models
from crypto_predictor.training.fanout import LocalFanout
from crypto_predictor.training.global_models import asset_splits, calendar_edges, global_datasets
from crypto_predictor.training.pipeline import TrainOptions, train_run
from tests.api.conftest import FRESH_NOW
from tests.support.slices import DATA_END, fill_store

ASSETS = ("bitcoin", "ethereum", "litecoin", "algorand")
OPTIONS = TrainOptions(kinds=("linear", "xgboost", "ensemble"), members=("linear", "xgboost"), quick=True,
                       design="global")


@pytest.fixture(scope="module")
def store_url(tmp_path_factory, data_dir):
    url = f"sqlite:///{tmp_path_factory.mktemp('global') / 'store.db'}"
    fill_store(url, data_dir, ("bitcoin", "ethereum", "litecoin"), last_days=90)
    fill_store(url, data_dir.parent, ("ALGO",), last_days=25)
    return url


@pytest.fixture(scope="module")
def bundle(store_url, tmp_path_factory):
    models = tmp_path_factory.mktemp("global_models")
    version, results = train_run(store_url, list(ASSETS), ["1h"], OPTIONS, models, n_jobs=1)
    return models, version, results


def test_one_model_per_kind_shared_by_every_asset(bundle):
    models, version, results = bundle
    manifest = load_manifest(models / version)
    design = manifest["extra"]["design"]["1h"]
    assert design["design"] == "global" and design["assets"] == sorted(ASSETS)
    assert design["kinds"] == ["linear", "xgboost"] and len(design["fold_edges"]) == 3
    assert {r.asset for r in results} == set(ASSETS) and all(r.design == "global" for r in results)
    # The pooled fit is the same model for every asset: identical files (hashes) in each asset's directory.
    for kind in ("linear", "xgboost"):
        hashes = {a: sorted((rel.split("/", 3)[3], sha) for rel, sha in manifest["files"].items()
                            if rel.startswith(f"{a}/1h/{kind}/") and not rel.endswith("calibration.json"))
                  for a in ASSETS}
        assert hashes["bitcoin"] and all(h == hashes["bitcoin"] for h in hashes.values()), kind
        # On disk they are one file (hard links), whatever the number of assets.
        for rel in (r for r in manifest["files"] if r.startswith(f"bitcoin/1h/{kind}/") and "calibration" not in r):
            inodes = {(models / version / rel.replace("bitcoin/", f"{a}/", 1)).stat().st_ino for a in ASSETS}
            assert len(inodes) == 1, rel
    # Each asset keeps its own gate, intervals and ensemble weights.
    compared = 0
    for r in results:
        assert r.summary["served"]["mase"] <= 1.0 and r.summary["naive"]["mase"] == pytest.approx(1.0)
        assert r.features == results[0].features and set(r.context) == set(GLOBAL_CONTEXT)
        # the served rows behind its coverage, which figures pooled over assets read (bench_skill)
        rows, served = r.served_rows, r.summary["served"]
        assert len(rows) == served["n"] and rows.index.is_monotonic_increasing
        assert rows["inside80"].mean() == pytest.approx(served["coverage_80"])
        assert rows["inside80"].count() == served["coverage_n_80"] and set(rows["tercile"]) <= {-1, 0, 1, 2}
        # interval scores on the rows the served forecast and baseline_quantile both have
        both = rows["bq_is80"].notna()
        assert both.sum() == r.summary["baseline_quantile"]["coverage_n_80"] and rows["is80"].notna().eq(both).all()
        if both.any():  # a young asset's test rows may all lack the baseline's 30 days
            compared += 1
            assert rows["bq_is80"].mean() == pytest.approx(r.summary["baseline_quantile"]["interval_score_80"],
                                                           rel=1e-5)
    assert compared >= 2


def test_a_short_history_asset_is_served_by_the_global_model(bundle, store_url):
    models, version, results = bundle
    algo = next(r for r in results if r.asset == "algorand")
    assert algo.n_rows < 25 * 24  # it could never train a model of its own with the usual folds
    # Its first fold had nothing of its own to learn from: the pooled rows of the others did.
    assert algo.folds["linear"][0]["n_train"] == 0
    set_alias(models, "production", version)
    config = TestConfig(DATABASE_URL=store_url, MODELS_DIR=str(models))
    service = PredictionService(config, clock=lambda: FRESH_NOW)
    data = service.predict("ALGO", "1h")
    # A worker holds each global model once: every asset's ensemble shares the same member objects.
    loaded = service.snapshot().bundles[version].pairs
    members = {a: loaded[(a, "1h")].model.members_ for a in ASSETS}
    for i in range(2):
        assert len({id(m[i]) for m in members.values()}) == 1
    assert len({id(loaded[(a, "1h")].model) for a in ASSETS}) == len(ASSETS)  # own weights each
    assert data["symbol"] == "algorand" and data["skill"]["n"] == algo.summary["served"]["n"]
    low, high = data["interval"]["80"]
    assert low < data["current_price"] < high


def test_a_batch_of_every_asset_calls_each_global_model_once(bundle, store_url, monkeypatch):
    from crypto_predictor.models import LinearModel, XGBoostModel

    models, version, _ = bundle
    set_alias(models, "production", version)
    service = PredictionService(TestConfig(DATABASE_URL=store_url, MODELS_DIR=str(models)), clock=lambda: FRESH_NOW)
    service.start()
    pairs = service.models.served.bundles[version].pairs
    for asset in ASSETS:  # this tiny bundle's gate shrank every forecast to no-change: give the models a share
        pairs[(asset, "1h")].shrink = 0.5
    singles = [service.predict(a, "1h") for a in ASSETS]
    calls = []
    for cls in (LinearModel, XGBoostModel):
        real = cls._predict_rows
        monkeypatch.setattr(cls, "_predict_rows", lambda self, X, real=real: calls.append(len(X)) or real(self, X))
    entries = service.predict_batch(list(ASSETS), "1h")
    assert calls == [len(ASSETS), len(ASSETS)]  # one call per global model, every asset's row in it
    assert [e["data"] for e in entries] == [{**d, "prediction_time": e["data"]["prediction_time"]}
                                          for d, e in zip(singles, entries)]


def test_the_intervals_variance_model_is_pooled_and_sees_only_rows_before_the_first_block(bundle, store_url):
    _, _, results = bundle
    hars = {r.asset: r.states["served"]["conformal"]["har"] for r in results}
    assert hars["bitcoin"] is not None and all(h == hars["bitcoin"] for h in hars.values())  # algorand's as well
    datasets, _ = global_datasets(CandleStore(store_url), ASSETS, "1h", OPTIONS)
    edges = calendar_edges(datasets, 2)
    assert global_models.pooled_har(datasets, edges).to_state() == hars["bitcoin"]

    def moved(ds, after: bool):  # another path (and wider bars) after, or before, the first block
        rows = (ds.candles.index >= edges[0]) == after
        candles = ds.candles.copy()
        walk = np.exp(np.random.default_rng(3).normal(0, 0.01, rows.sum()).cumsum())
        for column in ("open", "high", "low", "close"):
            candles.loc[rows, column] *= walk
        candles.loc[rows, "high"] *= 1.02
        return replace(ds, candles=candles)

    future = {a: moved(ds, after=True) for a, ds in datasets.items()}
    assert global_models.pooled_har(future, edges) == global_models.pooled_har(datasets, edges)
    past = {a: moved(ds, after=False) if a == "ethereum" else ds for a, ds in datasets.items()}
    assert global_models.pooled_har(past, edges) != global_models.pooled_har(datasets, edges)


def test_calendar_folds_are_shared_and_purged(store_url):
    datasets, skipped = global_datasets(CandleStore(store_url), ASSETS, "24h", OPTIONS)
    assert not skipped and {tuple(ds.X.columns) for ds in datasets.values()} == {tuple(datasets["bitcoin"].X.columns)}
    edges = calendar_edges(datasets, 3)
    for ds in datasets.values():
        for train, test in asset_splits(ds, edges):
            block = np.searchsorted(edges, ds.X.index[test[0]], side="right") - 1
            assert (ds.X.index[test] >= edges[block]).all() and (ds.X.index[test] < edges[block + 1]).all()
            if len(train):  # the last training target is realised before the block starts
                assert ds.X.index[train[-1]] + pd.Timedelta(hours=ds.horizon) < edges[block]


def test_datasets_built_in_worker_processes_equal_those_built_here(store_url, monkeypatch):
    monkeypatch.setattr(global_models, "DATASET_CHUNK", 3)  # two chunks: bitcoin..litecoin, and algorand
    here, _ = global_datasets(CandleStore(store_url), ASSETS, "1h", OPTIONS)
    with LocalFanout(2) as fanout:
        there, _ = global_datasets(CandleStore(store_url), ASSETS, "1h", OPTIONS, fanout)
    assert list(there) == list(here) == list(ASSETS)  # the order of the pooled rows is kept
    for asset in ASSETS:
        pd.testing.assert_frame_equal(there[asset].X, here[asset].X)
        pd.testing.assert_series_equal(there[asset].y, here[asset].y)


def test_global_features_are_causal(store_url, tmp_path, data_dir):
    """Rows of the global dataset do not change when later candles (own or context) are stored."""
    full = build_dataset(CandleStore(store_url), "litecoin", "1h", context_assets=GLOBAL_CONTEXT)
    cut = DATA_END - pd.Timedelta(days=10)
    short_url = f"sqlite:///{tmp_path / 'short.db'}"
    first = CandleStore(store_url).load("litecoin").index[0]  # the same start: recursive indicators seed there
    fill_store(short_url, data_dir, ("bitcoin", "ethereum", "litecoin"), start=first, end=cut)
    short = build_dataset(CandleStore(short_url), "litecoin", "1h", context_assets=GLOBAL_CONTEXT)
    common = short.X.index.intersection(full.X.index)
    assert len(common) > 1000
    np.testing.assert_allclose(short.X.loc[common].to_numpy(), full.X.loc[common].to_numpy(), rtol=1e-9, atol=1e-12)


def test_global_models_need_the_context_assets(tmp_path, data_dir):
    url = f"sqlite:///{tmp_path / 'no_eth.db'}"
    fill_store(url, data_dir, ("bitcoin", "litecoin"), last_days=60)
    with pytest.raises(InvalidInput, match="bitcoin, ethereum"):
        global_datasets(CandleStore(url), ["litecoin"], "1h", OPTIONS)


def test_a_retrain_of_a_global_production_trains_global_models_again(bundle):
    from crypto_predictor.jobs.retrain import plan

    models, version, _ = bundle
    what = plan(models, version)
    assert (what.design, what.members) == ("global", ("linear", "xgboost"))
    assert what.assets == sorted(ASSETS) and what.timeframes == ["1h"]
