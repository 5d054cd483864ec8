"""A first deploy with no manual steps: tables, then candles, then a production model, each only if missing.

``bootstrap`` is idempotent: on a store that has them it changes nothing and says so. Candles are
fetched for the configured assets (REFRESH_ASSETS) plus the context assets every model needs
(bitcoin, ethereum) that have none stored, ``BOOTSTRAP_DAYS`` back; a production model is trained
(``BOOTSTRAP_TIMEFRAMES`` x ``BOOTSTRAP_MODELS``, the default design) and deployed only when the
model store has no production alias. The caller holds the job lock, so two instances starting
at once do not both train.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from crypto_predictor.datasets import GLOBAL_CONTEXT
from crypto_predictor.errors import InvalidInput
from crypto_predictor.jobs.refresh import configured_assets, refresh
from crypto_predictor.models import get_model_class
from crypto_predictor.registry.store import open_model_store
from crypto_predictor.symbols import TIMEFRAMES


@dataclass
class BootstrapReport:
    lines: list = field(default_factory=list)
    changed: bool = False
    failed: bool = False


def _check(config) -> None:
    unknown = [t for t in config.BOOTSTRAP_TIMEFRAMES if t not in TIMEFRAMES]
    if unknown or not config.BOOTSTRAP_TIMEFRAMES:
        raise InvalidInput(f"BOOTSTRAP_TIMEFRAMES: unknown {', '.join(unknown) or '(none given)'}; "
                           f"valid: {', '.join(TIMEFRAMES)}")
    if not config.BOOTSTRAP_MODELS:
        raise InvalidInput("BOOTSTRAP_MODELS is empty; name at least one model kind, e.g. linear,xgboost")
    for kind in config.BOOTSTRAP_MODELS:
        try:
            get_model_class(kind)
        except InvalidInput as exc:
            raise InvalidInput(f"BOOTSTRAP_MODELS: {exc.message}") from None
    if config.BOOTSTRAP_DAYS < 30:
        raise InvalidInput(f"BOOTSTRAP_DAYS must be at least 30 (models need that much history), got "
                           f"{config.BOOTSTRAP_DAYS}")


def ingest_missing(config, source_name: str, source, store, now, report: BootstrapReport) -> None:
    wanted = list(dict.fromkeys([*configured_assets(config, source_name, source, "1h"), *GLOBAL_CONTEXT]))
    stored = store.assets("1h")
    missing = [a for a in wanted if a not in stored]
    if not missing:
        report.lines.append(f"candles: all {len(wanted)} asset(s) stored; nothing to ingest")
        return
    started = time.perf_counter()
    results = refresh(source, store, missing, now=now, initial_days=config.BOOTSTRAP_DAYS)
    report.lines.extend(r.line() for r in results)
    report.lines.append(f"candles: ingested {len(missing)} asset(s), {config.BOOTSTRAP_DAYS} days back, in "
                        f"{time.perf_counter() - started:.1f} s")
    report.changed = True
    report.failed = any(r.error for r in results)


def train_if_missing(config, store, models_dir, now, report: BootstrapReport, n_jobs: int = 2) -> None:
    from crypto_predictor.training.pipeline import TrainOptions, train_run  # late: only a run that trains

    models = open_model_store(models_dir or config.MODELS_DIR, config.MODEL_STORE_URL)
    production = models.aliases().get("production")
    if production is not None:
        report.lines.append(f"model: production is {production}; nothing to train")
        return
    assets = sorted(store.assets("1h"))
    if not assets:
        raise InvalidInput("no candles stored to train on; the ingest step failed")
    started = time.perf_counter()
    options = TrainOptions(kinds=tuple(config.BOOTSTRAP_MODELS), days=config.BOOTSTRAP_DAYS,
                           end=None if now is None else now.isoformat())
    version, results = train_run(config.DATABASE_URL, assets, list(config.BOOTSTRAP_TIMEFRAMES), options,
                                 models.root, n_jobs=n_jobs, store=models,
                                 extra={"bootstrap": {"days": config.BOOTSTRAP_DAYS}})
    entry = models.set_alias("production", version)
    report.lines.append(f"model: trained {version} ({len(results)} pairs: {', '.join(config.BOOTSTRAP_TIMEFRAMES)} x "
                        f"{', '.join(config.BOOTSTRAP_MODELS)}) in {time.perf_counter() - started:.0f} s; "
                        f"production: {entry['from'] or '(unset)'} -> {entry['to']}")
    report.changed = True


def bootstrap(config, source_name: str, source, store, models_dir=None, now=None, n_jobs: int = 2) -> BootstrapReport:
    _check(config)
    report = BootstrapReport()
    created = store.init_schema()
    report.lines.append(f"tables: {len(created)} present")
    ingest_missing(config, source_name, source, store, now, report)
    if not report.failed:
        train_if_missing(config, store, models_dir, now, report, n_jobs=n_jobs)
    report.lines.append("bootstrap: done" if report.changed else "bootstrap: nothing to do")
    return report
