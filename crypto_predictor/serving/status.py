"""Read-only reports of a PredictionService: the model store, walk-forward and live performance,
a symbol's prediction history, and readiness (health).

Live figures come from the prediction log; ``performance`` and ``history`` first fill in
realised prices (at most every VERIFY_EVERY_SECONDS), so they are never far behind.
"""

from __future__ import annotations

import logging
import math
import time

import pandas as pd
from sqlalchemy import text

from crypto_predictor.registry.aliases import ALIASES
from crypto_predictor.registry.artifacts import SERVED
from crypto_predictor.serving.live_metrics import history as live_history, live_accuracy, realised_state
from crypto_predictor.serving.prediction_log import verify
from crypto_predictor.symbols import resolve

log = logging.getLogger(__name__)

HOUR = pd.Timedelta(hours=1)

VERIFY_EVERY_SECONDS = 60  # prediction-log verification from history()/performance()
WALK_FORWARD_FIELDS = ("n", "mae", "rmse", "mase", "r2_oos", "directional_accuracy",
                       "top_decile_directional_accuracy", "coverage_80", "coverage_95", "interval_width_80",
                       "interval_width_95", "interval_score_80", "interval_score_95", "coverage_80_by_vol",
                       "coverage_95_by_vol", "coverage_80_se", "coverage_95_se", "coverage_80_by_vol_se",
                       "coverage_95_by_vol_se", "brier", "brier_n", "reliability_slope",
                       "base", "shrink")  # the last two: served forecast only (None for the kinds)
SERVED_ONLY_FIELDS = ("reliability",)  # the 10-bin table, for the served forecast alone (it is long)


def _walk_forward_row(kind: str, row: dict) -> dict:
    fields = WALK_FORWARD_FIELDS + (SERVED_ONLY_FIELDS if kind == SERVED else ())
    return {k: row.get(k) for k in fields}


class StatusReports:
    """What ``PredictionService.versions/performance/history/health`` answer; owns no model state."""

    def __init__(self, service):
        self.service = service
        self._verified = -math.inf

    def versions(self) -> dict:
        """Every version with each pair's headline (``registry.headline``), the aliases and what is served.
        A version's row is read once per manifest, not per call: a full manifest is about 1.5 MB (its
        every figure is at /models/performance/<version>)."""
        svc = self.service
        served = svc.snapshot()
        rows = [{k: v for k, v in row.items() if k != "path"} for row in svc.model_store.list_versions(metrics=False)]
        aliases, problem = svc.model_store.read_aliases()
        return {"versions": rows, "aliases": aliases, "serving": dict(served.aliases),
                "loaded": svc.models.loaded(), "alias_problem": problem}

    def _verify_log(self) -> None:
        svc = self.service
        if svc.log is None or time.monotonic() - self._verified < VERIFY_EVERY_SECONDS:
            return
        self._verified = time.monotonic()
        svc.log.flush(timeout=2.0)
        try:
            verify(svc.store)
        except Exception as exc:  # live figures are then a little behind, nothing worse
            log.warning("prediction log verification failed: %s", exc)

    def _manifest(self, version) -> tuple:
        """(served snapshot, resolved version, its manifest); raises ModelNotFound for an unknown one."""
        svc = self.service
        served = svc.snapshot()
        name = version if version not in (None, "") else "production"
        if name in ALIASES and name in served.aliases:
            resolved = served.aliases[name]
        else:
            resolved = svc.model_store.resolve(name)
        bundle = served.bundles.get(resolved)  # a served version's manifest is already loaded
        return served, resolved, bundle.manifest if bundle is not None else svc.model_store.load_manifest(resolved)

    def performance_token(self, version) -> tuple:
        """(what ``performance(version)`` is made of, the oldest newest-candle time of its assets, the
        version as resolved): the token holds the version and its manifest, the served aliases (the A/B
        block), and the realised rows of the log. Passing the third item to ``performance`` builds the
        body from the same resolution: one manifest read, and no alias switch between tag and body."""
        svc = self.service
        source = self._manifest(version)
        served, resolved, manifest = source
        live = None
        if svc.log is not None:
            self._verify_log()
            try:
                live = realised_state(svc.store.engine)
            except Exception as exc:  # no log table yet: performance() reports no live rows either
                live = type(exc).__name__
        latest = svc.data.latest(manifest.get("assets") or []) if manifest.get("assets") else {}
        known = [t for t in latest.values() if t is not None]
        token = (resolved, manifest.get("created_at"), sorted(served.aliases.items()), svc.ab_share, live)
        return token, min(known) if known else None, source

    def performance(self, version, source: tuple | None = None) -> dict:
        """Walk-forward and live figures of ``version``; ``source``: ``performance_token``'s third item."""
        svc = self.service
        served, resolved, manifest = self._manifest(version) if source is None else source
        overall = (manifest.get("metrics") or {}).get("overall") or {}
        walk_forward = {asset: {tf: {kind: _walk_forward_row(kind, row) for kind, row in kinds.items()}
                                for tf, kinds in tfs.items()} for asset, tfs in overall.items()}
        out = {"version": resolved, "created_at": manifest.get("created_at"), "data_range": manifest.get("data_range"),
               "walk_forward": walk_forward, "live": [], "ab_test": None}
        if svc.log is None:
            return out
        self._verify_log()
        engine = svc.store.engine
        out["live"] = live_accuracy(engine, version=resolved)

        def overall_live(v):
            rows = live_accuracy(engine, version=v, by=())
            return {"version": v, "live": rows[0] if rows and rows[0]["n"] else None}

        if served.aliases.get("challenger"):
            out["ab_test"] = {"challenger_share": svc.ab_share,
                              **{alias: overall_live(served.aliases[alias]) for alias in served.aliases}}
        return out

    def history(self, symbol, limit=50) -> list[dict]:
        svc = self.service
        asset = resolve(symbol).id
        if svc.log is None:
            return []
        self._verify_log()
        return live_history(svc.store.engine, asset, max(1, min(int(limit), 1000)))

    def health(self) -> dict:
        svc = self.service
        try:
            served = svc.snapshot()
        except Exception as exc:  # health answers even when loading itself blows up
            served = svc.models.served
            svc.models.record_failure(None, None, exc)
        production = served.aliases.get("production")
        refused, integrity = svc.models.failure, dict(svc.models.integrity)
        # Degraded: nothing served, the production bundle changed on disk, or production (or the alias
        # file itself) was refused, so what is served is not what was deployed.
        ok = (production is not None and production not in integrity
              and not (refused is not None and refused["alias"] in (None, "production")))
        model = {"ok": ok, "version": production, "challenger": served.aliases.get("challenger"),
                 "loaded": svc.models.loaded(), "refused": refused, "integrity": integrity or None}
        checks = {"model": model}
        try:
            with svc.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = {"ok": True}
        except Exception as exc:
            checks["database"] = {"ok": False, "error": type(exc).__name__}
        checks["data"] = self._data_check(served, production) if checks["database"]["ok"] else {"ok": False}
        if svc.log is not None:
            checks["prediction_log"] = {"ok": True, **svc.log.stats()}
        ok = all(checks[k]["ok"] for k in ("model", "database", "data"))
        return {"ok": ok, "model_version": production, "checks": checks}

    def _data_check(self, served, production) -> dict:
        svc = self.service
        bundle = served.bundles.get(production)
        assets = sorted({a for a, _ in bundle.pairs}) if bundle else ["bitcoin"]
        now = svc.now()
        ages = {}
        for asset, latest in svc.data.query_latest(assets).items():  # health reads the store itself
            ages[asset] = None if latest is None else round((now - latest - HOUR).total_seconds() / 3600, 2)
        known = [a for a in ages.values() if a is not None]
        ok = bool(known) and len(known) == len(ages)
        if svc.source is not None and svc.max_age_hours > 0:
            ok = ok and max(known) <= svc.max_age_hours
        return {"ok": ok, "age_hours": max(known) if known else None, "assets": ages,
                "live_source": None if svc.source is None else getattr(svc.source, "name", "custom"),
                "live_refresh": None if svc.refresher is None else (svc.refresher.last or {"pending": True})}
