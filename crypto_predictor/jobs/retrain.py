"""The retrain job: decide from live accuracy whether production needs a successor, and train one.

The decision looks at the production version's realised predictions whose target time fell in
the last RETRAIN_WINDOW_DAYS. A (asset, timeframe) group with at least RETRAIN_MIN_SAMPLES of
them triggers when its direction accuracy or its 80% interval coverage is below the configured
minimum; smaller groups are reported but never trigger (too few to tell bad from unlucky).

A triggered (or forced) run trains a new version and points ``challenger`` at it; production
changes only when asked (``promote``). Why the run happened is written into the new version's
manifest (``extra.retrain``), so it is sealed and hashed with the bundle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

from crypto_predictor.registry.store import open_model_store
from crypto_predictor.sentiment_features import uses_sentiment
from crypto_predictor.serving.live_metrics import live_accuracy
from crypto_predictor.timeutil import iso, to_utc

# (metric in live_accuracy rows, config attribute holding its minimum)
CHECKS = (("directional_accuracy", "RETRAIN_MIN_DIRECTION_ACCURACY"), ("coverage_80", "RETRAIN_MIN_COVERAGE80"))


@dataclass
class Trigger:
    version: str
    asset: str
    timeframe: str
    metric: str
    value: float
    threshold: float
    n: int
    window_days: float

    def line(self) -> str:
        return (f"{self.version} {self.asset} {self.timeframe}: {self.metric} {self.value:.3f} < {self.threshold:.3f} "
                f"(n={self.n}, window {self.window_days:g} days)")


@dataclass
class Decision:
    production: str | None
    since: str
    until: str
    window_days: float
    min_samples: int
    thresholds: dict
    groups: list = field(default_factory=list)  # live_accuracy rows checked, each with a "status"
    triggers: list = field(default_factory=list)
    forced: bool = False

    @property
    def retrain(self) -> bool:
        return self.forced or bool(self.triggers)

    def as_record(self) -> dict:
        """What goes into the new version's manifest: the decision without the bulky group rows."""
        return {"production_version": self.production, "forced": self.forced, "window_days": self.window_days,
                "window": {"since": self.since, "until": self.until}, "min_samples": self.min_samples,
                "thresholds": self.thresholds, "triggers": [asdict(t) for t in self.triggers],
                "groups_checked": [{k: g.get(k) for k in ("asset", "timeframe", "n", "directional_accuracy",
                                                          "coverage_80", "status")} for g in self.groups]}

    def lines(self) -> list[str]:
        if self.production is None:
            out = ["no production version is deployed: nothing to check"]
        else:
            out = [f"production {self.production}: {len(self.groups)} asset/timeframe group(s) with realised "
                   f"predictions targeted in ({self.since}, {self.until}] ({self.window_days:g} days; "
                   f"min {self.min_samples} samples, min direction accuracy "
                   f"{self.thresholds['directional_accuracy']:.3f}, min 80% coverage {self.thresholds['coverage_80']:.3f})"]
        for g in self.groups:
            acc, cov = g.get("directional_accuracy"), g.get("coverage_80")
            out.append(f"  {g['asset']:<12} {g['timeframe']:<4} n={g['n']:<5} "
                       f"dir.acc {'-' if acc is None else f'{acc:.3f}'}  cov80 {'-' if cov is None else f'{cov:.3f}'}"
                       f"  {g['status']}")
        out.extend(f"trigger: {t.line()}" for t in self.triggers)
        if self.forced:
            out.append("forced: retraining regardless of live accuracy")
        return out


def decide(engine, models_dir, config, now=None, force: bool = False) -> Decision:
    """Check the production version's live accuracy over the rolling window against the thresholds."""
    until = pd.Timestamp.now(tz="UTC") if now is None else to_utc(now)
    window = float(config.RETRAIN_WINDOW_DAYS)
    since = until - pd.Timedelta(days=window)
    thresholds = {metric: float(getattr(config, attr)) for metric, attr in CHECKS}
    production = open_model_store(models_dir).aliases().get("production")
    decision = Decision(production, iso(since), iso(until), window, int(config.RETRAIN_MIN_SAMPLES),
                        thresholds, forced=force)
    if production is None:
        return decision
    for row in live_accuracy(engine, version=production, since=since, until=until):
        failing = []
        if row["n"] >= decision.min_samples:
            for metric, threshold in thresholds.items():
                value = row.get(metric)
                if value is not None and value < threshold:
                    failing.append(Trigger(production, row["asset"], row["timeframe"], metric, float(value),
                                           threshold, int(row["n"]), window))
            row["status"] = "TRIGGER" if failing else "ok"
        else:
            row["status"] = f"too few samples (< {decision.min_samples})"
        decision.groups.append(row)
        decision.triggers.extend(failing)
    return decision


@dataclass
class Plan:
    """What a retrain would train: taken from the production manifest unless overridden."""

    assets: list
    timeframes: list
    kinds: list
    days: int | None
    design: str = "auto"  # production's design when all its timeframes share one, else "auto"
    members: tuple | None = None  # production's ensemble members (None: the default)
    sentiment: bool = False  # production's features include the Fear & Greed Index


def plan(models_dir, production, assets=None, timeframes=None, kinds=None, days=None, stored_assets=()) -> Plan:
    manifest = {}
    if production is not None:
        manifest = open_model_store(models_dir).load_manifest(production)
    data_range = manifest.get("data_range") if isinstance(manifest.get("data_range"), dict) else {}
    designs = {(d or {}).get("design", "pair") for d in ((manifest.get("extra") or {}).get("design") or {}).values()}
    design = designs.pop() if len(designs) == 1 else "auto"
    return Plan(assets=list(assets or manifest.get("assets") or stored_assets),
                timeframes=list(timeframes or manifest.get("timeframes") or []),
                kinds=list(kinds or manifest.get("kinds") or []),
                days=days if days is not None else data_range.get("days"), design=design,
                members=tuple((manifest.get("extra") or {}).get("members") or ()) or None,
                sentiment=uses_sentiment(manifest.get("features") or ()))


def train_and_deploy(database_url, models_dir, decision: Decision, what: Plan, options, promote: bool = False,
                     n_jobs: int = 2, on_done=None, fanout=None) -> dict:
    """Train ``what`` into a new version recording ``decision``, then alias it; returns what changed."""
    from crypto_predictor.training.pipeline import train_run  # late: only a run that trains loads the models

    record = dict(decision.as_record(), trained_at=iso(pd.Timestamp.now(tz="UTC")), promote=promote)
    version, results = train_run(database_url, what.assets, what.timeframes, options, models_dir, n_jobs=n_jobs,
                                 on_done=on_done, extra={"retrain": record}, fanout=fanout)
    store = open_model_store(models_dir)
    switches = [store.set_alias("challenger", version)]
    if promote:
        switches.append(store.set_alias("production", version))
    return {"version": version, "results": results, "switches": switches, "record": record}
