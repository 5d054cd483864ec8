"""The verify job: fill realised prices into the prediction log, then score it.

Filling is idempotent (only rows still without a realised price whose target candle is
stored are touched), so the job can run as often as cron likes. Scores are live direction
accuracy and 80%/95% interval coverage per model version, asset and timeframe, over every
realised prediction or over those whose target time falls in a window.
"""

from __future__ import annotations

import pandas as pd

from crypto_predictor.serving.live_metrics import live_accuracy, pending
from crypto_predictor.serving.prediction_log import ensure_table, verify
from crypto_predictor.timeutil import iso, to_utc

COLUMNS = (("model_version", "VERSION", "{}"), ("asset", "ASSET", "{}"), ("timeframe", "TF", "{}"),
           ("n", "N", "{}"), ("directional_accuracy", "DIR.ACC", "{:.1%}"), ("coverage_80", "COV80", "{:.1%}"),
           ("coverage_95", "COV95", "{:.1%}"), ("mae_pct", "MAE%", "{:.3f}"), ("mase", "MASE", "{:.3f}"))


def window_bounds(days=None, now=None) -> tuple:
    """(since, until) for the last ``days`` days before ``now``; (None, None) = everything."""
    if days is None:
        return None, None if now is None else to_utc(now)
    until = pd.Timestamp.now(tz="UTC") if now is None else to_utc(now)
    return until - pd.Timedelta(days=float(days)), until


def run_verify(store, days=None, now=None) -> dict:
    """Fill realised outcomes, then score; returns what was done and the per-group scores."""
    ensure_table(store.engine)
    filled = verify(store)
    since, until = window_bounds(days, now)
    groups = live_accuracy(store.engine, since=since, until=until)
    return {"filled": filled, "pending": pending(store.engine),
            "window": {"days": days, "since": iso(since), "until": iso(until)},
            "groups": groups}


def format_table(groups: list[dict]) -> str:
    lines = [tuple(head for _, head, _ in COLUMNS)]
    for row in groups:
        lines.append(tuple("-" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt in COLUMNS))
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)
