"""PNG plots of a bundle re-test (``evaluate_model.py --plots DIR``).

Imported only when plots are asked for: matplotlib costs start-up time the rest of the
CLI does not need. Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas,
never through pyplot, so no global figure state and no display is involved.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from crypto_predictor.training.metrics import direction_scores  # noqa: E402
from crypto_predictor.training.retest import CURVE_LEVELS, PairEvaluation  # noqa: E402

# The predictions plot shows at most this many of the latest rows (a month of hours) to stay readable.
MAX_POINTS = 720
TOP_FEATURES = 20
FOLD_METRICS = (("mase", "MASE (<1 beats naive)", 1.0), ("directional_accuracy", "directional accuracy", 0.5),
                ("coverage_80", "coverage of the 80% interval", 0.8))


def feature_importance(evaluation: PairEvaluation) -> tuple[str, pd.Series] | None:
    """(kind, importance per feature, largest first): xgboost, else random forest, else linear.

    Tree kinds: xgboost's total gain per feature from the fitted booster (``booster_``).
    Linear: |coefficient| on standardised features (``coef_``), comparable across features.
    Ensemble members are searched too; the LSTM has no cheap importance and is skipped.
    """
    candidates = []
    for kind, kr in evaluation.kinds.items():
        if kind == "served":  # the base kind's model again, scaled: nothing new to show
            continue
        candidates.append((kind, kr.model))
        candidates += [(f"{kind}:{m.kind}", m) for m in getattr(kr.model, "members_", [])]
    preference = {"xgboost": 0, "random_forest": 1, "linear": 2}
    candidates.sort(key=lambda c: preference.get(getattr(c[1], "kind", ""), 9))  # stable: bundle order next
    names = evaluation.features
    for label, model in candidates:
        booster = getattr(model, "booster_", None)
        if booster is not None:
            gain = booster.get_score(importance_type="total_gain")  # keys f0, f1, ... (fitted on arrays)
            values = [gain.get(f"f{i}", gain.get(name, 0.0)) for i, name in enumerate(names)]
            return label, pd.Series(values, index=names, dtype=float).sort_values(ascending=False)
        coef = getattr(model, "coef_", None)
        if coef is not None and len(np.ravel(coef)) == len(names):
            return label, pd.Series(np.abs(np.ravel(coef)), index=names).sort_values(ascending=False)
    return None


def confidence_reliability(evaluation: PairEvaluation, kind: str) -> tuple[pd.DataFrame, float]:
    """(the 10-bin reliability table of the re-test JSON, bins with rows only; the Brier score)."""
    kr = evaluation.kinds[kind]
    scores = direction_scores(evaluation.y_true, kr.y_pred, kr.confidence)
    table = pd.DataFrame([b for b in scores["reliability"] if b["n"]], columns=["bin", "n", "predicted", "observed"])
    return table, scores["brier"]


def main_kind(evaluation: PairEvaluation) -> str:
    """The kind the single-model plots show: the ensemble when saved, else the first kind."""
    return "ensemble" if "ensemble" in evaluation.kinds else next(iter(evaluation.kinds))


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def plot_predictions(evaluation: PairEvaluation, path: Path) -> Path:
    kind = main_kind(evaluation)
    kr = evaluation.kinds[kind]
    tail = slice(max(0, len(evaluation.index) - MAX_POINTS), None)
    t = evaluation.index[tail]
    fig = Figure(figsize=(12, 5))
    ax = fig.add_subplot()
    for level, alpha in ((95, 0.15), (80, 0.3)):
        lo, hi = kr.intervals.get(f"lower{level}"), kr.intervals.get(f"upper{level}")
        if lo is not None and hi is not None:
            ax.fill_between(t, 100 * lo[tail], 100 * hi[tail], color="tab:blue", alpha=alpha, linewidth=0,
                            label=f"{level}% interval")
    ax.plot(t, 100 * evaluation.y_true[tail], color="black", linewidth=0.7, label="actual")
    ax.plot(t, 100 * kr.y_pred[tail], color="tab:red", linewidth=1.0, label=f"predicted ({kind})")
    ax.axhline(0, color="grey", linewidth=0.5)
    shown = "" if tail.start == 0 else f", latest {MAX_POINTS} rows"
    ax.set_title(f"{evaluation.asset} {evaluation.timeframe}: predicted vs actual log return{shown}")
    ax.set_ylabel(f"log return over {evaluation.timeframe} (%)")
    ax.legend(loc="upper left", fontsize="small")
    fig.autofmt_xdate()
    return _save(fig, path)


def plot_residuals(evaluation: PairEvaluation, path: Path) -> Path:
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    series = {k: evaluation.y_true - kr.y_pred for k, kr in evaluation.kinds.items()}
    series["naive"] = evaluation.y_true
    everything = 100 * np.concatenate(list(series.values()))
    edges = np.histogram_bin_edges(everything[np.isfinite(everything)], bins=50)
    for name, res in series.items():
        mae = float(np.mean(np.abs(res)))
        ax.hist(100 * res, bins=edges, histtype="step", linewidth=1.2, label=f"{name} (MAE {100 * mae:.3f}%)",
                linestyle="--" if name == "naive" else "-")
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_title(f"{evaluation.asset} {evaluation.timeframe}: residuals (actual - predicted)")
    ax.set_xlabel("residual (log return, %)")
    ax.set_ylabel("rows")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_calibration(evaluation: PairEvaluation, path: Path, levels=CURVE_LEVELS) -> Path:
    fig = Figure(figsize=(12, 5))
    left, right = fig.subplots(1, 2)
    left.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":", label="ideal")
    for name in [*evaluation.kinds, "naive"]:
        curve = evaluation.coverage_curve(name, levels)
        left.plot(list(curve), list(curve.values()), marker="o", label=name,
                  linestyle="--" if name == "naive" else "-")
    left.set_xlim(min(levels) - 0.05, 1.0)
    left.set_ylim(min(levels) - 0.15, 1.0)
    left.set_xlabel("nominal interval level")
    left.set_ylabel("observed coverage")
    left.set_title("interval calibration")
    left.legend(fontsize="small")

    kind = main_kind(evaluation)
    rel, brier = confidence_reliability(evaluation, kind)
    right.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":", label="ideal")
    if len(rel):
        right.plot(rel["predicted"], rel["observed"], marker="o", label=kind)
        for _, row in rel.iterrows():
            right.annotate(f"n={int(row['n'])}", (row["predicted"], row["observed"]), fontsize="x-small",
                           textcoords="offset points", xytext=(4, -10))
    right.set_xlabel("mean confidence (10 bins of width 0.1)")
    right.set_ylabel("observed directional accuracy")
    right.set_title("direction confidence: Brier " + ("n/a (no direction called)" if math.isnan(brier)
                                                       else f"{brier:.4f} (coin flip 0.25)"))
    right.legend(fontsize="small")
    fig.suptitle(f"{evaluation.asset} {evaluation.timeframe}: calibration on the scored window")
    return _save(fig, path)


def plot_importance(evaluation: PairEvaluation, path: Path) -> Path | None:
    found = feature_importance(evaluation)
    if found is None:
        return None
    label, importance = found
    top = importance.head(TOP_FEATURES)[::-1]
    fig = Figure(figsize=(8, max(3, 0.3 * len(top) + 1)))
    ax = fig.add_subplot()
    ax.barh(list(top.index), top.to_numpy(), color="tab:green")
    what = "|coefficient| (standardised features)" if "linear" in label.split(":")[-1] else "total gain"
    ax.set_xlabel(what)
    ax.set_title(f"{evaluation.asset} {evaluation.timeframe}: feature importance ({label})")
    return _save(fig, path)


def plot_folds(evaluation: PairEvaluation, manifest: dict, path: Path) -> Path | None:
    folds = (((manifest.get("metrics") or {}).get("folds") or {}).get(evaluation.asset) or {}).get(
        evaluation.timeframe) or {}
    folds = {k: rows for k, rows in folds.items() if rows}
    if not folds:
        return None
    fig = Figure(figsize=(5 * len(FOLD_METRICS), 4.5))
    axes = fig.subplots(1, len(FOLD_METRICS))
    width = 0.8 / len(folds)
    for ax, (key, title, reference) in zip(axes, FOLD_METRICS):
        for i, (kind, rows) in enumerate(folds.items()):
            x = np.array([r.get("fold", j) for j, r in enumerate(rows)], dtype=float)
            y = np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)
            ax.bar(x + (i - (len(folds) - 1) / 2) * width, y, width=width, label=kind)
        ax.axhline(reference, color="grey", linewidth=0.8, linestyle=":")
        n_folds = max(len(rows) for rows in folds.values())
        ax.set_xticks(range(n_folds), [str(k) for k in range(n_folds)])
        ax.set_title(title)
        ax.set_xlabel("walk-forward fold")
        values = [r.get(key) for rows in folds.values() for r in rows if r.get(key) is not None]
        if values:
            lo, hi = min(values + [reference]), max(values + [reference])
            pad = 0.1 * (hi - lo) or 0.05
            ax.set_ylim(lo - pad, hi + pad)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{evaluation.asset} {evaluation.timeframe}: per-fold walk-forward metrics at training time")
    return _save(fig, path)


def write_plots(evaluation: PairEvaluation, manifest: dict, out_dir) -> list[Path]:
    """Every plot for one (asset, timeframe) into ``out_dir``; returns the files written.

    ``<asset>_<timeframe>_{predictions,residuals,calibration,importance,folds}.png``; importance
    is left out when no kind has one (an LSTM alone), folds when the manifest has none.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{evaluation.asset}_{evaluation.timeframe}"
    written = [
        plot_predictions(evaluation, out / f"{stem}_predictions.png"),
        plot_residuals(evaluation, out / f"{stem}_residuals.png"),
        plot_calibration(evaluation, out / f"{stem}_calibration.png"),
        plot_importance(evaluation, out / f"{stem}_importance.png"),
        plot_folds(evaluation, manifest, out / f"{stem}_folds.png"),
    ]
    return [p for p in written if p is not None]
