"""The dashboard's charts, from ``serving.dashboard``'s view data (``api/charts.py`` draws them)."""

from __future__ import annotations

from crypto_predictor.api.charts import bar_chart, calibration_chart, time_chart


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def skill(rows: list[dict]):
    """Walk-forward MASE minus 1 of each pair's served forecast and of its best model kind (what the skill
    gate weighed): below zero beats no-change."""
    items = []
    for r in rows:
        for label, row in (("served", r["walk_forward"]), (f"best: {r['best'].get('kind')}", r["best"])):
            if row.get("mase") is not None:
                items.append((f"{r['asset']} {r['timeframe']} · {label}", row["mase"] - 1.0,
                              f"MASE {row['mase']:.4f} over {row.get('n') or 0} rows"))
    return bar_chart("Walk-forward MASE - 1 (below 0 beats no-change)", items,
                     value_format=lambda v: f"{v + 1:.4f}", signs=("worse", "better")) if items else None


def predictions(data: dict):
    """The price, and each served prediction with its 80/95% interval at its target time."""
    logged = data["predictions"]
    if not logged and not data["prices"]:
        return None
    band = lambda key: [(p["target_time"], *(p["interval"][key] or (None, None))) for p in logged]  # noqa: E731
    dots = [(p["target_time"], p["predicted_price"],
             f"{p['target_time']} predicted {p['predicted_price']:,.2f}"
             + ("" if p["realised_price"] is None else f", realised {p['realised_price']:,.2f}")) for p in logged]
    return time_chart(f"{data['asset']} {data['timeframe']}: price, predictions and their intervals",
                      lines=[("close", "price", [(p["time"], p["close"]) for p in data["prices"]])],
                      bands=[("95% interval", "band95", band("95")), ("80% interval", "band80", band("80"))],
                      dots=[("prediction", "predicted", dots)])


def rolling_coverage(data: dict):
    rolling = data["rolling"]
    if not rolling:
        return None
    ends = [rolling[0]["time"], rolling[-1]["time"]]
    return time_chart("Rolling live coverage against nominal",
                      lines=[("nominal 80%", "nominal", [(t, 0.8) for t in ends]),
                             ("nominal 95%", "nominal", [(t, 0.95) for t in ends]),
                             ("live 80%", "cov80", [(r["time"], r["coverage_80"]) for r in rolling]),
                             ("live 95%", "cov95", [(r["time"], r["coverage_95"]) for r in rolling])],
                      y_format=_pct, y_range=(0.0, 1.0))


def calibration(data: dict):
    """Interval coverage against its nominal level, and the direction probability's reliability bins."""
    series = [("walk-forward coverage", "walk", [(c["nominal"], c["walk_forward"],
                                                  f"nominal {_pct(c['nominal'])}, covered {_pct(c['walk_forward'])}")
                                                 for c in data["calibration"]]),
              ("live coverage", "live", [(c["nominal"], c["live"], f"nominal {_pct(c['nominal'])}, covered "
                                          f"{_pct(c['live'])}") for c in data["calibration"]]),
              ("direction reliability", "reliability", [(b.get("predicted"), b.get("observed"),
                                                         f"predicted {_pct(b.get('predicted'))}, hit "
                                                         f"{_pct(b.get('observed'))} of {b.get('n')}")
                                                        for b in data["reliability"] if b.get("n")])]
    return calibration_chart("Calibration: observed against nominal / predicted", series)


def contributions(explanation: dict | None):
    if not explanation:
        return None
    items = [(c["feature"], c["contribution"], f"value {c['value']:.4g}, contribution {c['contribution']:+.3e}")
             for c in explanation["contributions"]]
    return bar_chart("Feature contributions to the model's forecast (log return)", items,
                     value_format=lambda v: f"{v:+.2e}")


def mase_difference(rows: list[dict]):
    items = []
    for r in rows:
        for label, key in (("served", "walk_forward"), ("best model", "best")):
            a, b = (r[side][key] or {} for side in ("production", "challenger"))
            if a.get("mase") is not None and b.get("mase") is not None:
                items.append((f"{r['asset']} {r['timeframe']} · {label}", b["mase"] - a["mase"],
                              f"production {a['mase']:.4f}, challenger {b['mase']:.4f}"))
    return bar_chart("Challenger MASE minus production MASE (below 0: challenger better)", items,
                     value_format=lambda v: f"{v:+.4f}", signs=("worse", "better")) if items else None
