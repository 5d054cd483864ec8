"""GET endpoints of /api/v1: analysis, correlation, sentiment, models, model performance, symbols, prediction
history."""

from __future__ import annotations

import time

import pandas as pd
from flask import Blueprint, current_app, jsonify

from crypto_predictor.api.errors import ValidationFailed
from crypto_predictor.api.http_cache import (CONDITIONAL_HEADERS, conditional, etag, next_candle_max_age,
                                             seconds_until)
from crypto_predictor.api.observability import CACHE_LOOKUPS, labelled, note
from crypto_predictor.api.operations import operation
from crypto_predictor.api.runtime import cache_enabled, cache_get, cache_key, cache_set, get_service
from crypto_predictor.api.schemas import (Analysis, AnalysisQuery, CorrelationQuery, Generic, HistoryQuery, Sentiment,
                                          SentimentQuery, SymbolPath, VersionPath)
from crypto_predictor.errors import DataNotFound
from crypto_predictor.serving.analysis import analyse, history_hours
from crypto_predictor.serving.correlation import correlation
from crypto_predictor.serving.sentiment import newest_day, sentiment_window
from crypto_predictor.symbols import ASSETS, INTERVALS_MS, TIMEFRAMES, resolve

bp = Blueprint("info", __name__)
DAY = pd.Timedelta(days=1)


def _ok(data, started: float, **metadata):
    metadata["processing_time"] = round(time.perf_counter() - started, 6)
    return jsonify({"status": "success", "data": data, "metadata": metadata})


@bp.get("/analysis/<symbol>")
@operation(summary="Historical analysis: OHLCV, indicators, summary and a technical signal", tags=("analysis",),
           description="`days` counts back from the newest stored candle, not from today (the store may end in "
                       "the past). Hourly candles are resampled to 4h or 1d bars (UTC-aligned, complete bars "
                       "only). The BUY/SELL/HOLD signal is a net vote of RSI, MACD, SMA trend, EMA cross and "
                       "Bollinger bands on the last bar; it describes the chart and is not a forecast. `sentiment`: "
                       "the Fear & Greed Index as published by data_as_of, over the same days.",
           query=AnalysisQuery, path=SymbolPath, response=Analysis, conditional=True, headers=CONDITIONAL_HEADERS,
           errors={400: "Unknown interval (lists the valid ones)", 404: "Unknown symbol, or no candles stored for it",
                   422: "days is not an integer from 1 to 365"})
def analysis(symbol: str, query: AnalysisQuery):
    """Chart data for the newest ``days`` days in the store (the store may end in the past)."""
    started = time.perf_counter()
    days, interval = query.days, query.interval
    asset = resolve(symbol).id
    note(symbol=asset)
    store = current_app.extensions["candle_store"]
    newest = store.latest_time(asset, "1h")
    if newest is None:
        raise DataNotFound(f"no candles stored for {asset}; run ingest first", asset=asset)
    as_of = newest + pd.Timedelta(hours=1)
    fg_day = newest_day(store.engine, as_of)
    made_of = (asset, interval, days, newest.isoformat(), fg_day and fg_day.isoformat())
    return conditional(etag("analysis", *made_of), next_candle_max_age(newest, get_service().now()),
                       build=lambda: _analysis(store, made_of, as_of, started))


def _analysis(store, made_of: tuple, as_of: pd.Timestamp, started: float):
    asset, interval, days, newest = made_of[0], made_of[1], made_of[2], as_of - pd.Timedelta(hours=1)
    key = cache_key("analysis", made_of)
    data = cache_get(key)
    hit = data is not None
    if cache_enabled():
        labelled(CACHE_LOOKUPS, "analysis", "hit" if hit else "miss").inc()
    if not hit:
        start = newest - pd.Timedelta(hours=history_hours(interval, days) - 1)
        result = analyse(store.load(asset, "1h", start), interval, days)
        data = {"symbol": asset, "data_as_of": as_of.isoformat(), **result,
                "sentiment": sentiment_window(store.engine, days, as_of)}
        cache_set(key, data, "1h")
    note(cache_hit=hit)
    return _ok(data, started, cache_hit=hit)


@bp.get("/analysis/correlation")
@operation(summary="Return correlations between symbols and their rolling correlation to bitcoin", tags=("analysis",),
           description="Log returns of complete bars (1h, 4h or 1d, UTC-aligned) over the last `days` days that "
                       "every symbol has stored; `matrix` holds Pearson correlations, `rolling_to_reference` each "
                       "symbol's correlation to bitcoin over a trailing 30-bar window, per bar.",
           query=CorrelationQuery, response=Generic, conditional=True, headers=CONDITIONAL_HEADERS,
           errors={400: "Unknown interval, or fewer than 30 common bars (insufficient_data)",
                   404: "Unknown symbol, or no candles stored for one", 422: "symbols lists fewer than 2 or more "
                   "than 20 symbols, or days is not an integer from 1 to 365"})
def correlation_matrix(query: CorrelationQuery):
    started = time.perf_counter()
    assets = list(dict.fromkeys(resolve(s).id for s in query.symbols))
    if len(assets) < 2:
        raise ValidationFailed("'symbols' must name at least 2 different assets", field="symbols")
    store = current_app.extensions["candle_store"]
    newest = [store.latest_time(a, "1h") for a in (*assets, "bitcoin")]
    made_of = (tuple(assets), query.interval, query.days, tuple(t and t.isoformat() for t in newest))
    common = None if None in newest else min(newest)
    return conditional(etag("correlation", *made_of), next_candle_max_age(common, get_service().now()),
                       build=lambda: _ok(correlation(store, assets, query.interval, query.days), started))


@bp.get("/sentiment")
@operation(summary="The Crypto Fear & Greed Index: current value, class and the daily series", tags=("analysis",),
           description="Daily values (0-100) from alternative.me, oldest first, up to the newest stored day; a day's "
                       "value counts as published at 00:00 UTC of the next day. Classes: 0-25 Extreme Fear, 26-46 "
                       "Fear, 47-54 Neutral, 55-75 Greed, 76-100 Extreme Greed.",
           query=SentimentQuery, response=Sentiment, conditional=True, headers=CONDITIONAL_HEADERS,
           errors={404: "No index values stored yet", 422: "days is not an integer from 1 to 3650"})
def sentiment(query: SentimentQuery):
    started = time.perf_counter()
    engine = current_app.extensions["candle_store"].engine
    newest = newest_day(engine)
    if newest is None:
        raise DataNotFound("no Fear & Greed Index values stored yet; run ingest --source fear-greed")
    # the next day's value is published when the day after it begins
    max_age = seconds_until(newest + 2 * DAY, get_service().now(), 86400)
    return conditional(etag("sentiment", query.days, newest.isoformat()), max_age,
                       build=lambda: _ok(sentiment_window(engine, query.days), started))


@bp.get("/models")
@operation(summary="Model versions with creation time, aliases and headline metrics", tags=("models",),
           description="versions[] has each version's created_at, assets, timeframes, kinds, aliases, status and "
                       "skill[asset][timeframe]: the served forecast's walk-forward headline, as /predict's skill "
                       "block (mase against no-change, beats_naive, direction_accuracy, n, coverage_80/95, "
                       "interval_score_ratio_80/95 over baseline_quantile). Every figure of every kind is at "
                       "/models/performance/{model_version}.",
           response=Generic)
def models():
    started = time.perf_counter()
    return _ok(get_service().versions(), started)


@bp.get("/models/performance/<model_version>")
@operation(summary="Walk-forward metrics (vs the naive forecast) and live accuracy of one version", tags=("models",),
           description="walk_forward[asset][timeframe] has a row per kind, the served forecast (served), naive and "
                       "two interval baselines around the naive point: baseline_quantile (quantiles of the trailing "
                       "30 days of returns) and baseline_static (of the whole training window). Interval rows: "
                       "coverage_80/95, interval_width_*, interval_score_80/95 (width + 2/alpha x miss distance, "
                       "log-return units; lower is better), coverage_*_by_vol (low, middle, high volatility third), "
                       "coverage_*_se (standard error of the coverage from blocks of consecutive rows: a coverage "
                       "within about 2 of them of its level is as close as the rows can tell). "
                       "brier: Brier score of the direction probability (a coin flip scores 0.25); the served row "
                       "also has its 10-bin reliability table. The ETag changes with the version, the served "
                       "aliases and every newly realised prediction; max-age runs to the next candle's close.",
           path=VersionPath, response=Generic, conditional=True, headers=CONDITIONAL_HEADERS,
           errors={404: "Unknown model version (lists the available ones)"})
def model_performance(model_version: str):
    started = time.perf_counter()
    service = get_service()
    token, newest, source = service.performance_token(model_version)
    note(version=token[0])
    return conditional(etag("performance", *token), next_candle_max_age(newest, service.now()),
                       build=lambda: _ok(service.performance(model_version, source), started))


@bp.get("/symbols")
@operation(summary="Supported symbols, timeframes and analysis intervals", tags=("info",), response=Generic)
def symbols():
    """Every supported asset, and which of them the production model serves (and at which timeframes)."""
    started = time.perf_counter()
    production, manifest = get_service().served_manifest("production")  # no listing of every bundle on disk
    served = set(manifest.get("assets") or [])
    listed = [{"id": a.id, "ticker": a.ticker, "name": a.name, "pair": a.pair, "tier": a.tier,
               "coingecko_id": a.coingecko_id, "served": a.id in served} for a in ASSETS]
    return _ok({"symbols": listed, "timeframes": list(TIMEFRAMES),
                "served_timeframes": manifest.get("timeframes") or [],
                "intervals": list(INTERVALS_MS), "model_version": production}, started)


@bp.get("/predictions/<symbol>/history")
@operation(summary="Logged predictions of one symbol, newest first, with realised outcomes where known",
           tags=("info",), query=HistoryQuery, path=SymbolPath, response=Generic,
           errors={404: "Unknown symbol", 422: "limit is not an integer from 1 to 500"})
def prediction_history(symbol: str, query: HistoryQuery):
    started = time.perf_counter()
    limit = query.limit
    asset = resolve(symbol).id
    note(symbol=asset)
    rows = get_service().history(asset, limit=limit)
    return _ok(rows, started, count=len(rows), limit=limit)
