"""What a version's walk-forward figures come to for a reader who is not training: per pair, the served
forecast's skill against no-change and its intervals' record against the simple quantile baseline.

``/predict`` answers one pair's (``skill``); ``/api/v1/models`` and the dashboard list every version's.
"""

from __future__ import annotations

import math

SERVED = "served"  # not a model kind: the gated forecast of a pair (no model files)
# The manifest row of the simple interval baseline (training/baselines.py, which readers may not import).
QUANTILE_BASELINE = "baseline_quantile"


def _figure(value) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else round(float(value), 6)


def skill_of(row: dict | None, baseline: dict | None = None) -> dict | None:
    """What the app sees of a walk-forward row: MASE vs naive, whether it beats naive, direction, rows,
    and how its intervals did: coverage, and interval score over ``baseline``'s (the
    ``baseline_quantile`` row: trailing 30-day quantiles around no-change; below 1 is sharper)."""
    if not row or row.get("mase") is None:
        return None
    mase = float(row["mase"])
    out = {"mase": round(mase, 6), "beats_naive": bool(mase < 1.0),
           "direction_accuracy": _figure(row.get("directional_accuracy")), "n": int(row.get("n") or 0)}
    for key in ("80", "95"):
        score, simple = row.get(f"interval_score_{key}"), (baseline or {}).get(f"interval_score_{key}")
        ratio = score / simple if score is not None and simple else None
        out |= {f"coverage_{key}": _figure(row.get(f"coverage_{key}")), f"interval_score_ratio_{key}": _figure(ratio)}
    return out


def pair_skill(rows) -> dict | None:
    """``skill_of`` the served forecast's row among a pair's metrics rows (kind -> row)."""
    rows = rows if isinstance(rows, dict) else {}
    served = rows.get(SERVED)
    return skill_of(served if isinstance(served, dict) else None, rows.get(QUANTILE_BASELINE))


def headline(overall) -> dict:
    """asset -> timeframe -> ``pair_skill`` of a manifest's overall metrics, leaving out pairs without one;
    a shape it does not know gives {}."""
    out = {}
    for asset, timeframes in (overall if isinstance(overall, dict) else {}).items():
        for timeframe, rows in (timeframes if isinstance(timeframes, dict) else {}).items():
            skill = pair_skill(rows)
            if skill is not None:
                out.setdefault(asset, {})[timeframe] = skill
    return out
