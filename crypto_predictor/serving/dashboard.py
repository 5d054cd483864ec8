"""What the ops dashboard shows, as plain data: no Flask, no HTML (``api/dashboard.py`` renders it).

Every figure comes from where the API's own answers come from: the served bundles' manifests
(walk-forward, out of sample, beside naive), the prediction log (live), the candle store
(freshness), the model store (versions, aliases, their history) and the job-run record. Live
figures cover the retrain window (RETRAIN_WINDOW_DAYS back from the newest stored candle: now, with a
live source; the data's end for a CSV store) and are flagged with the retrain job's own thresholds,
so a red cell here is what would trigger a retrain.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from crypto_predictor.errors import CryptoPredictorError, ServiceUnavailable
from crypto_predictor.registry.artifacts import SERVED
from crypto_predictor.serving.live_metrics import history, live_accuracy
from crypto_predictor.storage.job_runs import last_runs
from crypto_predictor.symbols import check_timeframe, resolve
from crypto_predictor.timeutil import iso

log = logging.getLogger(__name__)

HOUR = pd.Timedelta(hours=1)
ROLLING = 24  # realised predictions per point of the rolling live coverage
CHART_PREDICTIONS = 240  # newest logged predictions drawn on a pair's chart
WALK_FORWARD = ("n", "mase", "directional_accuracy", "coverage_80", "coverage_95", "interval_score_80", "brier")
NOT_MODELS = (SERVED, "naive", "baseline_quantile", "baseline_static")
LIVE = ("n", "directional_accuracy", "coverage_80", "coverage_95", "mase")


def thresholds(config) -> dict:
    """The retrain job's live thresholds (jobs/retrain.py reads the same settings)."""
    return {"directional_accuracy": float(config.RETRAIN_MIN_DIRECTION_ACCURACY),
            "coverage_80": float(config.RETRAIN_MIN_COVERAGE80), "min_samples": int(config.RETRAIN_MIN_SAMPLES),
            "window_days": float(config.RETRAIN_WINDOW_DAYS)}


def _best_model(kinds: dict) -> dict:
    """The model kind with the lowest walk-forward MASE (what the skill gate weighed), with its figures."""
    models = {k: r for k, r in kinds.items() if k not in NOT_MODELS and (r or {}).get("mase") is not None}
    if not models:
        return {}
    kind = min(models, key=lambda k: models[k]["mase"])
    return {"kind": kind, **{k: models[kind].get(k) for k in WALK_FORWARD}}


def _walk_forward(manifest: dict) -> dict:
    """(asset, timeframe) -> {served, naive, best} rows from a manifest's overall metrics."""
    out = {}
    for asset, tfs in ((manifest.get("metrics") or {}).get("overall") or {}).items():
        for tf, kinds in tfs.items():
            out[(asset, tf)] = {kind: {k: (kinds.get(kind) or {}).get(k) for k in WALK_FORWARD}
                                for kind in (SERVED, "naive")}
            out[(asset, tf)]["best"] = _best_model(kinds)
    return out


def _live(engine, version, since, until, **only) -> dict:
    """(asset, timeframe) -> live figures of ``version``; ``only``: asset= / timeframe= filters."""
    if version is None:
        return {}
    try:
        rows = live_accuracy(engine, version=version, since=since, until=until, **only)
    except Exception as exc:  # no log table yet: the page says there are no live figures
        log.info("no live figures: %s", exc)
        return {}
    return {(r["asset"], r["timeframe"]): {k: r.get(k) for k in LIVE} for r in rows}


def _flags(live: dict | None, limits: dict) -> list[str]:
    """The live figures below the retrain thresholds (only with enough samples to judge)."""
    if not live or (live.get("n") or 0) < limits["min_samples"]:
        return []
    return [k for k in ("directional_accuracy", "coverage_80") if live.get(k) is not None and live[k] < limits[k]]


def _freshness(service, assets) -> dict:
    now = service.now()
    out = {}
    for asset, latest in service.data.query_latest(assets).items():
        closed = None if latest is None else latest + HOUR
        out[asset] = {"data_as_of": iso(closed),
                      "age_hours": None if closed is None else round((now - closed).total_seconds() / 3600, 1)}
    return out


def _window(service, bundles) -> tuple[pd.Timestamp, pd.Timestamp, dict]:
    """(since, until, limits): the live window ends where the newest stored candle of these bundles closes."""
    limits = thresholds(service.config)
    assets = sorted({a for b in bundles if b is not None for a, _ in b.pairs})
    known = [t for t in service.data.query_latest(assets).values() if t is not None]
    until = min(service.now(), max(known) + HOUR) if known else service.now()
    return until - pd.Timedelta(days=limits["window_days"]), until, limits


def overview(service) -> dict:
    served = service.snapshot()
    production, challenger = served.aliases.get("production"), served.aliases.get("challenger")
    bundle = served.bundles.get(production)
    since, until, limits = _window(service, [bundle])
    walk = _walk_forward(bundle.manifest) if bundle else {}
    live = _live(service.store.engine, production, since, until)
    pairs = sorted(bundle.pairs) if bundle else []
    rows = []
    for asset, tf in pairs:
        figures = live.get((asset, tf))
        found = walk.get((asset, tf), {})
        rows.append({"asset": asset, "timeframe": tf, "walk_forward": found.get(SERVED) or {},
                     "best": found.get("best") or {}, "live": figures,
                     "flags": _flags(figures, limits)})
    try:
        runs = last_runs(service.store.engine)
    except Exception as exc:
        log.info("no job runs: %s", exc)
        runs = {}
    return {"production": production, "challenger": challenger, "ab_share": service.ab_share,
            "created_at": bundle.manifest.get("created_at") if bundle else None,
            "versions": service.versions()["versions"],
            "alias_history": service.model_store.history()[-10:][::-1],
            "rows": rows, "freshness": _freshness(service, sorted({a for a, _ in pairs})), "jobs": runs,
            "thresholds": limits, "window": {"since": iso(since), "until": iso(until)}}


def _rolling_coverage(realised: list[dict]) -> list[dict]:
    """Coverage of the last ROLLING realised predictions, at each realised target time."""
    rows = sorted((r for r in realised if r["within_80"] is not None), key=lambda r: r["target_time"])
    out = []
    for i in range(ROLLING - 1, len(rows)):
        window = rows[i - ROLLING + 1 : i + 1]
        out.append({"time": rows[i]["target_time"], "coverage_80": float(np.mean([r["within_80"] for r in window])),
                    "coverage_95": float(np.mean([bool(r["within_95"]) for r in window]))})
    return out


def _prices(service, asset: str, predictions: list[dict]) -> list[dict]:
    if not predictions:
        return []
    start = min(pd.Timestamp(p["prediction_time"]) for p in predictions) - 24 * HOUR
    candles = service.store.load(asset, "1h", start)
    return [{"time": (t + HOUR).isoformat(), "close": float(c)} for t, c in candles["close"].items()]


def pair_view(service, symbol: str, timeframe: str) -> dict:
    """One served pair: its predictions and bands against what happened, coverage, calibration, contributions."""
    asset, timeframe = resolve(symbol).id, check_timeframe(timeframe)
    served = service.snapshot()
    production = served.aliases.get("production")
    bundle = served.bundles.get(production) if production else None
    if bundle is None:
        raise ServiceUnavailable("no production model is loaded; deploy one (deploy_model.py)")
    pair = bundle.pair(asset, timeframe)  # ModelNotFound lists what it serves
    rows = (bundle.manifest.get("metrics") or {}).get("overall", {}).get(asset, {}).get(timeframe, {})
    served_row = rows.get(SERVED) or {}
    try:
        logged = history(service.store.engine, asset, limit=CHART_PREDICTIONS, timeframe=timeframe)
    except Exception as exc:
        log.info("no prediction log: %s", exc)
        logged = []
    logged = logged[::-1]  # oldest first, for the charts
    realised = [p for p in logged if p["status"] == "realised"]
    live = _live(service.store.engine, production, None, None, asset=asset, timeframe=timeframe).get((asset, timeframe))
    calibration = [{"nominal": nominal, "walk_forward": served_row.get(f"coverage_{key}"),
                    "live": None if not live else live.get(f"coverage_{key}")}
                   for nominal, key in ((0.8, "80"), (0.95, "95"))]
    try:
        explanation, why_not = service.explain(asset, timeframe, model_version=production), None
    except CryptoPredictorError as exc:
        explanation, why_not = None, exc.message
    return {"asset": asset, "timeframe": timeframe, "version": production, "kind": pair.kind,
            "shrink": pair.shrink, "skill": pair.skill, "walk_forward": {k: served_row.get(k) for k in WALK_FORWARD},
            "live": live, "predictions": logged, "prices": _prices(service, asset, logged),
            "rolling": _rolling_coverage(realised), "calibration": calibration,
            "reliability": served_row.get("reliability") or [], "explanation": explanation,
            "explanation_error": why_not, "timeframes": sorted(tf for a, tf in bundle.pairs if a == asset)}


def comparison(service) -> dict:
    """Production and challenger side by side: the same walk-forward rows and the same live window."""
    served = service.snapshot()
    since, until, _ = _window(service, [served.bundles.get(v) for v in served.aliases.values()])
    sides = {}
    for alias in ("production", "challenger"):
        version = served.aliases.get(alias)
        bundle = served.bundles.get(version)
        sides[alias] = {"version": version, "created_at": bundle.manifest.get("created_at") if bundle else None,
                        "walk": _walk_forward(bundle.manifest) if bundle else {},
                        "live": _live(service.store.engine, version, since, until),
                        "pairs": set(bundle.pairs) if bundle else set()}
    pairs = sorted(sides["production"]["pairs"] | sides["challenger"]["pairs"])
    rows = [{"asset": a, "timeframe": tf,
             **{alias: {"walk_forward": (side["walk"].get((a, tf)) or {}).get(SERVED),
                        "best": (side["walk"].get((a, tf)) or {}).get("best"),
                        "live": side["live"].get((a, tf))} for alias, side in sides.items()}} for a, tf in pairs]
    return {"production": {k: sides["production"][k] for k in ("version", "created_at")},
            "challenger": {k: sides["challenger"][k] for k in ("version", "created_at")},
            "ab_share": service.ab_share, "rows": rows, "window": {"since": iso(since), "until": iso(until)}}
