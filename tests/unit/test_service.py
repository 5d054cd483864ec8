"""PredictionService on real bundles trained from a slice of the shared BTC/ETH candles.

Bundles (trained once per module, models end 2021-09-20 so the store holds ten days of
post-training candles): v1 the quick ensemble (all four kinds, LSTM included) for bitcoin and
ethereum at 24h; v2 and v3 linear-only bundles (fast to load) for the alias and A/B tests.
"Now" is pinned to just after the data (2021-10-01).
"""

from __future__ import annotations

import json
import math
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from crypto_predictor.config import TestConfig
from crypto_predictor.datasets import build_dataset, feature_frame
from crypto_predictor.errors import (DataTooOld, DataUnavailable, MarketDataUnavailable, ModelNotFound, ServiceUnavailable,
                                     UnknownSymbol, UnknownTimeframe)
from crypto_predictor.market.csvdir import CsvSource
from crypto_predictor.market.frames import FetchResult
from crypto_predictor.market.store import CandleStore
from tests.conftest import DATA_DIR
from tests.support.slices import DATA_END, fill_store as fill_shared_store
from crypto_predictor.registry.bundle import load_manifest
from crypto_predictor.registry.aliases import set_alias
from crypto_predictor.serving.service import PredictionService, ab_bucket
from crypto_predictor.serving.live_refresh import LOCK_NAME as LIVE_LOCK, LiveRefresher
from crypto_predictor.storage.lock import JobLock
from crypto_predictor.training.pipeline import TrainOptions, train_run

DATA = DATA_DIR
ASSETS = ("bitcoin", "ethereum")
TRAIN_END = "2021-09-20"
NOW = pd.Timestamp("2021-10-01T00:05:00Z")
FIELDS = {"symbol", "current_price", "predicted_price", "confidence", "change_percentage", "timeframe",
          "prediction_time", "model_version", "target_time", "direction", "interval", "data_as_of", "stale",
          "model_accuracy", "skill", "volatility"}


def clock_at(ts):
    return lambda: pd.Timestamp(ts).timestamp()


def fill_store(url, start="2021-06-15", end=DATA_END) -> CandleStore:
    return fill_shared_store(url, DATA, ASSETS, start=start, end=end)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """(root, database url, models dir) holding v1 (ensemble 24h), v2 (linear 1h+24h), v3 (linear 24h)."""
    root = tmp_path_factory.mktemp("service")
    url = f"sqlite:///{root / 'candles.db'}"
    fill_store(url)
    models = root / "models"
    # v1's ensemble keeps the LSTM as a member (no longer the default) so serving it stays covered.
    train_run(url, ASSETS, ["24h"], TrainOptions(kinds=("ensemble",), members=("linear", "random_forest", "xgboost",
                                                                             "lstm"), quick=True, days=45,
                                                 end=TRAIN_END), models)
    train_run(url, ASSETS, ["1h", "24h"], TrainOptions(kinds=("linear",), quick=True, days=45, end=TRAIN_END),
              models, n_jobs=1)
    train_run(url, ["bitcoin"], ["24h"], TrainOptions(kinds=("linear",), quick=True, days=30, end=TRAIN_END),
              models, n_jobs=1)
    return root, url, models


@pytest.fixture(scope="module")
def service(trained):
    """A started service on v1 (production), shared by the read-only tests."""
    root, url, models = trained
    set_alias(models, "production", "v1")
    svc = PredictionService(TestConfig(DATABASE_URL=url, MODELS_DIR=str(models), PREDICTION_LOG=False),
                            clock=clock_at(NOW))
    svc.start()
    return svc


@pytest.fixture()
def models_copy(trained, tmp_path):
    """A private model store (v2 and v3 only) so a test can move aliases freely."""
    _, _, models = trained
    target = tmp_path / "models"
    target.mkdir()
    for version in ("v2", "v3"):
        shutil.copytree(models / version, target / version)
    return target


def make_service(trained, models, **overrides):
    _, url, _ = trained
    settings = {"DATABASE_URL": url, "MODELS_DIR": str(models), "PREDICTION_LOG": False, **overrides}
    clock = settings.pop("clock", clock_at(NOW))
    store = settings.pop("store", None)
    source = settings.pop("source", None)
    return PredictionService(TestConfig(**settings), store=store, clock=clock, source=source)


# ---------------------------------------------------------------- predictions

def test_predict_returns_every_field_consistently(service, trained):
    _, url, models = trained
    data = service.predict("BTC", "24h")
    assert set(data) == FIELDS
    last = CandleStore(url).load("bitcoin", "1h", "2021-09-30T23:00Z")
    assert data["symbol"] == "bitcoin" and data["model_version"] == "v1" and data["timeframe"] == "24h"
    assert data["current_price"] == pytest.approx(last["close"].iloc[-1])
    assert data["data_as_of"] == "2021-10-01T00:00:00Z" and data["target_time"] == "2021-10-02T00:00:00Z"
    assert data["prediction_time"] == "2021-10-01T00:05:00Z" and data["stale"] is False
    change = data["predicted_price"] / data["current_price"] - 1
    assert data["change_percentage"] == pytest.approx(change * 100, abs=1e-4)
    assert data["direction"] == ("flat" if abs(change) < 1e-4 else "up" if change > 0 else "down")
    low80, high80 = data["interval"]["80"]
    low95, high95 = data["interval"]["95"]
    assert low95 < low80 <= data["predicted_price"] <= high80 < high95
    assert 0.0 <= data["confidence"] <= 1.0
    metrics = load_manifest(models / "v1")["metrics"]["overall"]["bitcoin"]["24h"]
    assert data["model_accuracy"] == pytest.approx(metrics["ensemble"]["directional_accuracy"])
    served, simple = metrics["served"], metrics["baseline_quantile"]
    assert data["skill"] == {"mase": pytest.approx(served["mase"]), "beats_naive": served["mase"] < 1.0,
                             "direction_accuracy": pytest.approx(served["directional_accuracy"]), "n": served["n"],
                             "coverage_80": pytest.approx(served["coverage_80"]),
                             "coverage_95": pytest.approx(served["coverage_95"]),
                             "interval_score_ratio_80": pytest.approx(served["interval_score_80"]
                                                                      / simple["interval_score_80"]),
                             "interval_score_ratio_95": pytest.approx(served["interval_score_95"]
                                                                      / simple["interval_score_95"])}


def test_serving_features_and_prediction_match_training_on_full_history(service, trained):
    """Features on the last SERVING_ROWS bars equal (to EMA-seed rounding) those on all history."""
    _, url, _ = trained
    store = CandleStore(url)
    pair = service.models.served.bundles["v1"].pair("ethereum", "24h")
    X_full, _ = feature_frame(store.load("ethereum"), {"bitcoin": store.load("bitcoin")}, "1h")
    full_tail = X_full[pair.features].iloc[-pair.context_rows:]
    service.predict("ethereum", "24h")
    served = service.data._frames[("ethereum", "1h", False)]  # (asset, bar, with sentiment)
    inputs = pair.inputs(served[1], served[2])
    assert list(inputs.X_tail.columns) == pair.features
    np.testing.assert_allclose(inputs.X_tail.to_numpy(), full_tail.to_numpy(), rtol=1e-3, atol=1e-6)
    assert pair.model.predict_last(inputs.X_tail) == pytest.approx(pair.model.predict_last(full_tail), abs=1e-5)


def test_post_training_residuals_are_the_models_errors_after_its_data(service, trained):
    _, url, _ = trained
    pair = service.models.served.bundles["v1"].pair("bitcoin", "24h")
    service.predict("bitcoin", "24h")
    newest_bar, stats = service.data._stats[("v1", "bitcoin", "24h")]
    first, last = pair.post_training_range(newest_bar)
    assert first == pd.Timestamp("2021-09-20T00:00Z") and last == pd.Timestamp("2021-09-29T23:00Z")
    assert stats.n_post == 240 and stats.n_stored == len(pair.stored_residuals)
    # The same errors from the training pipeline's dataset on the full history.
    ds = build_dataset(CandleStore(url), "bitcoin", "24h")
    rows = (ds.X.index >= first) & (ds.X.index <= last)
    expected = ds.y[rows].to_numpy() - pair.shrink * pair.model.predict(ds.X[pair.features])[rows]
    start = pair.window_start(pd.Timestamp("2021-09-30T23:00Z"), first - (pair.context_rows - 1) * pair.step)
    store = CandleStore(url)
    got, scales = pair.post_training_residuals(store.load("bitcoin", "1h", start), {"ethereum": store.load(
        "ethereum", "1h", start)}, first, last)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert scales is not None and np.all(scales > 0)


def test_unknown_symbol_timeframe_and_version_raise_the_right_errors(service):
    with pytest.raises(UnknownSymbol):
        service.predict("NOPE", "24h")
    with pytest.raises(UnknownTimeframe):
        service.predict("BTC", "2h")
    with pytest.raises(ModelNotFound, match="v1"):
        service.predict("BTC", "24h", model_version="v99")
    with pytest.raises(ModelNotFound, match="it has: bitcoin/24h, ethereum/24h") as info:
        service.predict("BTC", "1h")
    assert info.value.http_status == 404
    with pytest.raises(ModelNotFound, match="solana"):
        service.predict("SOL", "24h")


def test_a_loaded_pair_keeps_only_the_residuals_its_window_can_read(service, trained):
    from dataclasses import replace

    from crypto_predictor.registry.artifacts import StoredResiduals
    from crypto_predictor.serving.pairs import window_tail

    pair = service.models.served.bundles["v1"].pair("bitcoin", "24h")
    window = pair.conformal.window
    rng = np.random.default_rng(3)
    n = 3 * window
    values, scales = rng.standard_t(4, n) * 0.02, rng.uniform(0.01, 0.03, n)
    values[rng.choice(n, 50, replace=False)] = np.nan  # unrealised rows: the window counts finite ones only
    values[-window + 10] = np.nan
    times = pd.date_range("2021-01-01", periods=n, freq="h", tz="UTC")
    full = StoredResiduals(times, values, scales)
    tail = window_tail(full, pair.conformal)
    assert window < len(tail.values) < n and np.isfinite(tail.values / tail.scales).sum() == window
    assert tail.times[-1] == times[-1] and tail.values.base is None  # a copy: the full arrays can be freed
    post, post_scales = rng.normal(0, 0.02, 40), rng.uniform(0.01, 0.03, 40)
    for extra in ((None, None), (post, post_scales)):
        before = replace(pair, stored_times=times, stored_residuals=values, stored_scales=scales).interval_stats(*extra)
        after = replace(pair, stored_times=tail.times, stored_residuals=tail.values,
                        stored_scales=tail.scales).interval_stats(*extra)
        assert after.offsets == before.offsets and after.error_unit == before.error_unit
    # A served bundle keeps no per-fold rows in memory; the verified manifest on disk still has them.
    _, _, models = trained
    assert "folds" in load_manifest(models / "v1")["metrics"]
    assert set(service.models.served.bundles["v1"].manifest["metrics"]) == {"overall"}


def test_batch_reports_bad_symbols_in_their_own_entry_and_matches_single_predictions(service):
    entries = service.predict_batch(["BTC", "dogecoin", "nope", "ethereum", "bitcoin"], "24h")
    assert [e["status"] for e in entries] == ["success", "error", "error", "success", "success"]
    assert [e["symbol"] for e in entries] == ["BTC", "dogecoin", "nope", "ethereum", "bitcoin"]
    assert entries[1]["error"]["code"] == "model_not_found" and entries[2]["error"]["code"] == "unknown_symbol"
    assert entries[0]["data"] == service.predict("bitcoin", "24h") == entries[4]["data"]
    assert entries[3]["data"] == service.predict("ETH", "24h")
    with pytest.raises(UnknownTimeframe):  # a request-wide problem is the whole request's error
        service.predict_batch(["BTC"], "5m")


def test_cache_token_names_what_a_prediction_depends_on(service):
    assert service.cache_token("BTC", "24h") == ("bitcoin", "24h", "v1", "2021-09-30T23:00:00Z")
    assert service.cache_token("ETHUSDT", "24h", model_version="production")[2] == "v1"
    with pytest.raises(UnknownSymbol):
        service.cache_token("nope", "24h")


def test_versions_performance_and_health(service):
    listing = service.versions()
    assert [r["version"] for r in listing["versions"]] == ["v1", "v2", "v3"]
    assert all("path" not in r for r in listing["versions"])
    assert listing["aliases"]["production"] == "v1" and listing["loaded"] == ["v1"]
    perf = service.performance("production")
    rows = perf["walk_forward"]["bitcoin"]["24h"]
    assert perf["version"] == "v1" and {"ensemble", "naive", "lstm"} <= set(rows)
    assert rows["naive"]["mase"] == pytest.approx(1.0)
    health = service.health()
    assert health["ok"] is True and health["model_version"] == "v1"
    assert health["checks"]["data"]["age_hours"] == pytest.approx(5 / 60, abs=0.01)


# ---------------------------------------------------------------- deploys

def test_alias_switch_is_noticed_within_the_poll_interval(trained, models_copy):
    set_alias(models_copy, "production", "v2")
    svc = make_service(trained, models_copy, MODEL_POLL_SECONDS=0.3)
    assert svc.models.loaded() == []  # nothing is loaded before start(): the Gunicorn master stays light
    svc.start()
    before = svc.models.served
    assert svc.predict("BTC", "24h")["model_version"] == "v2"
    set_alias(models_copy, "production", "v3")
    switched_at = time.monotonic()
    while not svc.refresh_models():
        assert time.monotonic() - switched_at < 0.3 + 2.0, "alias switch not noticed"
        time.sleep(0.05)
    assert svc.predict("BTC", "24h")["model_version"] == "v3"
    # A request that took the old snapshot keeps a working model.
    old = before.bundles["v2"].pair("bitcoin", "24h")
    assert np.isfinite(old.model.predict_last(np.zeros((1, len(old.features)))))


def test_a_tampered_bundle_is_refused_and_the_previous_keeps_serving(trained, models_copy):
    set_alias(models_copy, "production", "v2")
    svc = make_service(trained, models_copy)
    svc.start()
    set_alias(models_copy, "production", "v3")  # verified now, tampered below before the worker loads it
    calibration = models_copy / "v3" / "bitcoin" / "24h" / "linear" / "calibration.json"
    state = json.loads(calibration.read_text())
    state["residuals"]["residual"][0] += 0.5
    calibration.write_text(json.dumps(state))
    assert svc.refresh_models(force=True) is False
    assert svc.predict("BTC", "24h")["model_version"] == "v2"
    health = svc.health()
    # v2 still answers, but production is not what was deployed: health says so (degraded, not ok)
    assert health["model_version"] == "v2" and health["checks"]["model"]["ok"] is False and health["ok"] is False
    refused = health["checks"]["model"]["refused"]
    assert refused["version"] == "v3" and "sha256 mismatch" in refused["error"]


def test_no_production_model_is_a_service_unavailable_error(trained, models_copy):
    svc = make_service(trained, models_copy)
    with pytest.raises(ServiceUnavailable) as info:
        svc.predict("BTC", "24h")
    assert info.value.http_status == 503 and info.value.code == "model_unavailable"
    assert svc.health()["ok"] is False
    assert svc.predict("BTC", "24h", model_version="v3")["model_version"] == "v3"  # explicit versions still work


def test_ab_share_routes_clients_stickily(trained, models_copy):
    set_alias(models_copy, "production", "v2")
    set_alias(models_copy, "challenger", "v3")
    clients = [f"client-{i}" for i in range(200)]
    all_in = make_service(trained, models_copy, AB_CHALLENGER_SHARE=1.0)
    assert {all_in.resolve_version(None, c) for c in clients} == {"v3"}
    assert all_in.resolve_version(None, None) == "v2"  # no client id: production
    assert all_in.resolve_version("v2", "client-1") == "v2"  # explicit wins
    assert all_in.resolve_version("production", "client-1") == "v2"
    none_in = make_service(trained, models_copy, AB_CHALLENGER_SHARE=0.0)
    assert {none_in.resolve_version(None, c) for c in clients} == {"v2"}
    half = make_service(trained, models_copy, AB_CHALLENGER_SHARE=0.5)
    first = [half.resolve_version(None, c) for c in clients]
    assert first == [half.resolve_version(None, c) for c in clients]
    assert 60 < first.count("v3") < 140
    assert all((v == "v3") == (ab_bucket(c) < 0.5) for c, v in zip(clients, first))
    assert half.predict("BTC", "24h", client_id=clients[first.index("v3")])["model_version"] == "v3"


# ---------------------------------------------------------------- live data

class FakeSource:
    """A live source serving the shared candles up to ``until`` (or failing)."""

    name = "fake"

    def __init__(self, until=None, fail=False):
        self.until, self.fail, self.calls = until, fail, []

    def fetch(self, symbol, interval="1h", start=None, end=None, progress=None):
        self.calls.append((symbol, pd.Timestamp(start) if start is not None else None))
        if self.fail:
            raise MarketDataUnavailable("fake: provider down", provider="fake", reason="down")
        candles = CsvSource(DATA).fetch(symbol).candles
        keep = (candles["open_time"] >= pd.Timestamp(start)) & (candles["open_time"] <= pd.Timestamp(self.until))
        return FetchResult(symbol, interval, candles[keep].reset_index(drop=True), self.name)


def test_a_request_never_asks_the_provider_and_marks_old_data_stale(trained, models_copy):
    set_alias(models_copy, "production", "v2")
    source = FakeSource(fail=True)
    svc = make_service(trained, models_copy, source=source, clock=clock_at("2021-10-01T03:00Z"), MAX_DATA_AGE_HOURS=6)
    data = svc.predict("BTC", "24h")
    assert data["stale"] is True and data["data_as_of"] == "2021-10-01T00:00:00Z"
    assert source.calls == []  # the request read the store only
    refresher = LiveRefresher(source, svc.store, svc.served_assets, svc.now, every_seconds=60)
    round_ = refresher.run_once()  # the provider is down: reported per asset, nothing stored
    assert set(round_["assets"]) == {"bitcoin", "ethereum"} and "provider down" in round_["assets"]["bitcoin"]
    assert svc.predict("BTC", "1h")["stale"] is True


def test_data_older_than_the_limit_is_refused_unless_the_limit_is_off(trained, models_copy):
    set_alias(models_copy, "production", "v2")
    late = clock_at("2021-10-02T00:00Z")
    svc = make_service(trained, models_copy, source=FakeSource(fail=True), clock=late, MAX_DATA_AGE_HOURS=6)
    with pytest.raises(DataTooOld) as info:
        svc.predict("BTC", "24h")
    assert info.value.http_status == 503 and info.value.code == "data_too_old"
    assert info.value.details["retry_after"] > 0
    assert svc.health()["checks"]["data"]["ok"] is False
    off = make_service(trained, models_copy, source=FakeSource(fail=True), clock=late, MAX_DATA_AGE_HOURS=0)
    assert off.predict("BTC", "24h")["stale"] is True
    csv_mode = make_service(trained, models_copy, clock=clock_at("2026-01-01T00:00Z"), MAX_DATA_AGE_HOURS=6)
    data = csv_mode.predict("BTC", "24h")  # no live source: stored data as is, no age limit
    assert data["stale"] is False and data["data_as_of"] == "2021-10-01T00:00:00Z"


def test_the_live_refresher_brings_missing_candles_for_every_served_asset(trained, models_copy, tmp_path):
    set_alias(models_copy, "production", "v2")
    store = fill_store(f"sqlite:///{tmp_path / 'behind.db'}", start="2021-08-01", end="2021-09-29T23:00Z")
    source = FakeSource(until="2021-09-30T23:00Z")
    svc = make_service(trained, models_copy, store=store, source=source, clock=clock_at("2021-10-01T00:00:30Z"),
                       LATEST_TIME_TTL_SECONDS=0, MAX_DATA_AGE_HOURS=48)
    before = svc.predict("ETH", "1h")
    assert before["stale"] is True and before["data_as_of"] == "2021-09-30T00:00:00Z" and source.calls == []
    refresher = LiveRefresher(source, store, svc.served_assets, svc.now, every_seconds=60)
    assert refresher.run_once()["assets"] == {"bitcoin": 24, "ethereum": 24}  # the context asset too
    assert store.latest_time("ethereum") == pd.Timestamp("2021-09-30T23:00Z")
    data = svc.predict("ETH", "1h")
    assert data["stale"] is False and data["data_as_of"] == "2021-10-01T00:00:00Z"
    assert not math.isnan(data["predicted_price"])
    assert refresher.run_once()["assets"] == {"bitcoin": 0, "ethereum": 0}
    assert len(source.calls) == 2  # up to date: the provider was not asked again


def test_one_worker_refreshes_at_a_time(trained, models_copy, tmp_path):
    set_alias(models_copy, "production", "v2")
    store = fill_store(f"sqlite:///{tmp_path / 'behind.db'}", start="2021-08-01", end="2021-09-29T23:00Z")
    svc = make_service(trained, models_copy, store=store, clock=clock_at("2021-10-01T00:00:30Z"))
    svc.start()
    holder = JobLock(store.engine, LIVE_LOCK, ttl_seconds=60).acquire()  # another worker is mid-round
    source = FakeSource(until="2021-09-30T23:00Z")
    refresher = LiveRefresher(source, store, svc.served_assets, svc.now, every_seconds=60)
    assert refresher.run_once() == {"at": "2021-10-01T00:00:30+00:00", "skipped": "another worker is refreshing"}
    assert source.calls == []
    holder.release()
    assert refresher.run_once()["assets"]["bitcoin"] == 24


def test_the_background_thread_runs_rounds_and_stops(trained, models_copy, tmp_path):
    set_alias(models_copy, "production", "v2")
    store = fill_store(f"sqlite:///{tmp_path / 'behind.db'}", start="2021-08-01", end="2021-09-29T23:00Z")
    source = FakeSource(until="2021-09-30T23:00Z")
    svc = make_service(trained, models_copy, store=store, source=source, clock=clock_at("2021-10-01T00:00:30Z"),
                       LIVE_REFRESH_SECONDS=0.2)
    svc.start()  # what a Gunicorn worker does after fork
    try:
        deadline = time.monotonic() + 20
        # the candles are stored mid-round; the round's report is written when it ends
        while ((store.latest_time("ethereum") != pd.Timestamp("2021-09-30T23:00Z")
                or "assets" not in svc.refresher.last) and time.monotonic() < deadline):
            time.sleep(0.05)
        assert store.latest_time("ethereum") == pd.Timestamp("2021-09-30T23:00Z")
        assert svc.refresher.running and svc.health()["checks"]["data"]["live_refresh"]["assets"]
    finally:
        svc.refresher.stop()
    assert not svc.refresher.running


# ---------------------------------------------------------------- serving caches

def next_candle(store, at):
    fill_shared_store(store, DATA, ASSETS, start=at, end=at)


def test_a_new_candle_invalidates_the_cached_features_and_changes_the_prediction(trained, models_copy, tmp_path):
    set_alias(models_copy, "production", "v2")
    store = fill_store(f"sqlite:///{tmp_path / 'growing.db'}", start="2021-08-01", end="2021-09-30T21:00Z")
    svc = make_service(trained, models_copy, store=store, LATEST_TIME_TTL_SECONDS=0)
    before = svc.predict("BTC", "1h")
    assert svc.predict("BTC", "1h") == before  # served from the kept feature rows
    next_candle(store, "2021-09-30T22:00Z")
    after = svc.predict("BTC", "1h")
    assert before["data_as_of"] == "2021-09-30T22:00:00Z" and after["data_as_of"] == "2021-09-30T23:00:00Z"
    assert after["current_price"] != before["current_price"]
    assert after["predicted_price"] != pytest.approx(before["predicted_price"], rel=1e-9)
    assert after == make_service(trained, models_copy, store=store).predict("BTC", "1h")  # nothing stale kept


def corrected(store, asset, at, factor):
    """Upsert the stored candle at ``at`` with its close scaled (a provider correcting history)."""
    row = store.load(asset, "1h", at, at).reset_index().drop(columns=["source"])
    row["close"] *= factor
    row["high"] = row[["high", "close"]].max(axis=1)
    row["low"] = row[["low", "close"]].min(axis=1)
    assert store.upsert(asset, "1h", row, "correction", revise=True)["updated"] == 1


def unshrunk(svc):
    """``svc`` with its served models unshrunk, so a prediction depends on the features whatever the
    skill gate learned for these small test bundles (tests of the feature cache, not of the gate)."""
    for bundle in svc.snapshot().bundles.values():
        for pair in bundle.pairs.values():
            pair.shrink = 1.0
    return svc


def test_a_corrected_older_candle_is_seen_after_the_feature_cache_period(trained, models_copy, tmp_path):
    """The documented rule: the newest candle time keys the features, so a correction further
    back shows in the prediction only once FEATURE_CACHE_SECONDS have passed (or a new candle lands)."""
    set_alias(models_copy, "production", "v2")
    store = fill_store(f"sqlite:///{tmp_path / 'corrected.db'}", start="2021-08-01", end="2021-09-30T23:00Z")
    kept = unshrunk(make_service(trained, models_copy, store=store, LATEST_TIME_TTL_SECONDS=0,
                                 FEATURE_CACHE_SECONDS=3600))
    short = unshrunk(make_service(trained, models_copy, store=store, LATEST_TIME_TTL_SECONDS=0,
                                  FEATURE_CACHE_SECONDS=0.3))
    before = kept.predict("BTC", "1h")
    assert short.predict("BTC", "1h") == before
    corrected(store, "bitcoin", pd.Timestamp("2021-09-30T20:00Z"), 1.05)
    assert kept.predict("BTC", "1h") == before  # same newest candle: the kept features are used
    time.sleep(0.35)
    fixed = short.predict("BTC", "1h")
    assert fixed["predicted_price"] != pytest.approx(before["predicted_price"], rel=1e-9)
    assert fixed["current_price"] == before["current_price"]  # the newest close did not change
    fresh = unshrunk(make_service(trained, models_copy, store=store)).predict("BTC", "1h")
    # Interval statistics follow at the next candle (a model pass over the residual window).
    assert fixed["predicted_price"] == pytest.approx(fresh["predicted_price"], rel=1e-12)


def test_a_batch_asks_for_the_newest_candles_once_and_then_uses_the_memo(trained, models_copy):
    from sqlalchemy import event

    set_alias(models_copy, "production", "v2")
    svc = make_service(trained, models_copy, LATEST_TIME_TTL_SECONDS=60)
    svc.start()
    newest = []
    event.listen(svc.store.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: newest.append(statement)
                 if "max(candles.open_time)" in statement.lower() else None)
    first = svc.predict_batch(["BTC", "ETH", "bitcoin", "ETHUSDT"], "1h")
    assert [e["status"] for e in first] == ["success"] * 4
    assert len(newest) == 1  # bitcoin and ethereum (each the other's context) in one statement
    again = svc.predict_batch(["BTC", "ETH"], "1h")
    assert len(newest) == 1 and again[0]["data"] == first[0]["data"]
    assert svc.cache_token("ETH", "1h") == ("ethereum", "1h", "v2", "2021-09-30T23:00:00Z") and len(newest) == 1


def test_a_stored_candle_the_features_refuse_is_our_fault_not_the_clients(trained, models_copy, tmp_path):
    # An infinite close written past validation (by hand, or by an old version): a 503, never a 400.
    set_alias(models_copy, "production", "v2")
    store = fill_store(f"sqlite:///{tmp_path / 'poisoned.db'}", start="2021-08-01", end="2021-09-30T23:00Z")
    svc = make_service(trained, models_copy, store=store)
    assert svc.predict("BTC", "1h")["symbol"] == "bitcoin"
    row = store.load("bitcoin", "1h", "2021-09-30T20:00Z", "2021-09-30T20:00Z").reset_index().drop(columns=["source"])
    row[["high", "close"]] = float("inf")
    store.upsert("bitcoin", "1h", row, "hand", revise=True)
    with pytest.raises(DataUnavailable, match="stored candles cannot be used") as err:
        make_service(trained, models_copy, store=store).predict("BTC", "1h")
    assert err.value.http_status == 503 and err.value.code == "data_unavailable"


def test_skill_reports_interval_figures_only_where_the_rows_have_them():
    from crypto_predictor.registry.headline import skill_of

    served = {"mase": 1.0, "n": 900, "directional_accuracy": 0.5, "coverage_80": 0.81, "coverage_95": float("nan"),
              "interval_score_80": 0.03, "interval_score_95": 0.05}
    skill = skill_of(served, {"interval_score_80": 0.04, "interval_score_95": 0.0})
    assert skill["coverage_80"] == 0.81 and skill["interval_score_ratio_80"] == pytest.approx(0.75)
    assert skill["coverage_95"] is None and skill["interval_score_ratio_95"] is None  # NaN and a zero baseline
    old = skill_of({"mase": 0.99, "n": 10})  # a bundle from before the interval scores
    assert old["beats_naive"] and old["direction_accuracy"] is None
    assert [old[f"{k}_{level}"] for k in ("coverage", "interval_score_ratio") for level in ("80", "95")] == [None] * 4
    assert skill_of({"n": 10}) is None


def test_confidence_is_a_coin_flip_unless_the_walk_forward_brier_beat_one(trained, models_copy):
    from crypto_predictor.confidence import DirectionCalibrator
    from crypto_predictor.serving.pairs import beats_coin_flip

    assert beats_coin_flip({"brier": 0.2494}) and not beats_coin_flip({"brier": 0.2500})
    assert not beats_coin_flip({"brier": None, "brier_n": 0}) and not beats_coin_flip({"brier": float("nan")})
    assert beats_coin_flip({"mase": 1.0})  # a bundle from before the Brier score: no verdict, as before
    set_alias(models_copy, "production", "v2")
    svc = unshrunk(make_service(trained, models_copy))
    pairs = [p for b in svc.snapshot().bundles.values() for p in b.pairs.values()]
    rng = np.random.default_rng(0)
    score = rng.uniform(0, 3, 2000)  # a calibrator with an opinion: stronger calls are right more often
    opinionated = DirectionCalibrator().fit(score, (rng.uniform(size=2000) < 0.5 + score / 8).astype(float))
    for pair in pairs:
        pair.confident, pair.calibrator = True, opinionated
    calibrated = svc.predict("bitcoin", "1h")["confidence"]
    assert calibrated != 0.5
    for pair in pairs:
        pair.confident = False
    assert svc.predict("bitcoin", "1h")["confidence"] == 0.5
