"""Which volatility scale makes the sharpest honest intervals: none, today's EWMA, a HAR forecast.

Per core asset and timeframe, the naive point forecast (what the skill gate serves nearly
everywhere) gets rolling conformal intervals exactly as training makes them (the trailing
``max(720, 12 h)`` out-of-sample scores, the ``ceil((n+1) level)``-th |score|), with each
candidate scale, on the second half of the rows; the first half fits the HAR model. Printed per
timeframe, means over assets: interval score at 80 / 95 relative to ``baseline_quantile`` (< 1:
sharper at honest coverage), coverage overall and per volatility third (the thirds cut on the
EWMA volatility, the same for every candidate), beside the two baselines.

Candidates:
  none   unnormalised scores;
  ewma   today's scale: sqrt(EWMA of squared row returns, span max(24, 3 h)) x sqrt(h);
  har    crypto_predictor.volatility's HAR model of realised variance (Corsi 2009), pooled over
         the assets and fitted on the first halves only, its long component ``--month-days``, with
         the settings training uses (``HarVolatility.for_bars``: range-measured bars, and on hourly
         bars the last 1 / 6 hours, the hour of the day and the weekend);
  har-return  the first HAR models: squared close-to-close returns, day / week / long only.

    DATABASE_URL=sqlite:///core.db .venv/bin/python -m bench.bench_intervals [--timeframe 1h ...] [--symbol all]
        [--month-days 30]
"""

from __future__ import annotations

import math

import click
import numpy as np

from crypto_predictor.calibration import causal_volatility, rolling_intervals
from crypto_predictor.cli.common import resolve_symbols, stored_assets
from crypto_predictor.config import Config
from crypto_predictor.datasets import BAR_HOURS, build_dataset
from crypto_predictor.market.store import CandleStore
from crypto_predictor.training.baselines import BASELINE_DAYS, quantile_baseline, static_baseline
from crypto_predictor.training.metrics import metrics, vol_terciles
from crypto_predictor.volatility import HarVolatility

LEVELS = (0.8, 0.95)
SCALES = ("none", "ewma", "har-return", "har")
# The scale training uses per timeframe (scoring.HAR_BARS: HAR everywhere since 2026-12-04): what ACI corrects.
SERVED_SCALE = {"1h": "har", "24h": "har", "7d": "har", "30d": "har"}


def aci_intervals(pos, y, scale, h: int, window: int, gamma: float, min_history: int = 100) -> dict:
    """Adaptive conformal inference (Gibbs & Candes 2021) on the rolling symmetric conformal intervals of a
    naive forecast: each level's miscoverage target moves by gamma x (target - miss) as each row's outcome
    becomes known (h rows later), and the interval takes that level's quantile of the trailing window."""
    y = np.asarray(y, dtype=float)
    s = np.ones(len(y)) if scale is None else np.asarray(scale, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.abs(np.where(s > 0, y / s, np.nan))
    alpha = {lv: 1.0 - lv for lv in LEVELS}
    out = {f"{side}{int(lv * 100)}": np.full(len(y), np.nan) for lv in LEVELS for side in ("lower", "upper")}
    miss = {lv: np.full(len(y), np.nan) for lv in LEVELS}
    done = 0
    for i, t in enumerate(pos):
        while done < i and pos[done] + h <= t:  # outcomes realised by now, oldest first
            for lv in LEVELS:
                if np.isfinite(miss[lv][done]):
                    alpha[lv] += gamma * ((1.0 - lv) - miss[lv][done])
            done += 1
        win = scores[max(0, done - window):done]
        win = np.sort(win[np.isfinite(win)])
        if len(win) < min_history or not np.isfinite(s[i]):
            continue
        for lv in LEVELS:
            level = 1.0 - alpha[lv]
            k = math.ceil((len(win) + 1) * level - 1e-9)
            q = 0.0 if k < 1 else (math.inf if k > len(win) else float(win[k - 1]))
            out[f"lower{int(lv * 100)}"][i], out[f"upper{int(lv * 100)}"][i] = -q * s[i], q * s[i]
            miss[lv][i] = float(abs(y[i]) > q * s[i])
    return out


class Pair:
    def __init__(self, ds):
        self.asset, self.h = ds.asset, ds.horizon
        self.rows_per_day = 24 // BAR_HOURS[ds.bar]
        self.y = ds.y.to_numpy()
        self.close = ds.close.to_numpy()
        self.candles = ds.candles
        n = len(self.y)
        self.test = np.arange(n // 2, n)
        self.train = np.arange(0, max(0, n // 2 - self.h))
        span = max(24, 3 * self.h)
        self.ewma = causal_volatility(self.close, self.h, span, min_periods=min(span, 48))


def fit_har(pairs: list[Pair], month_days: int, first: bool = False) -> HarVolatility:
    """crypto_predictor.volatility's model, pooled over the assets' first halves (``first``: the first
    models' settings, else training's)."""
    settings = {} if first else HarVolatility.for_bars(pairs[0].rows_per_day)
    return HarVolatility.fit_pooled([(p.candles, len(p.train)) for p in pairs], pairs[0].h, pairs[0].rows_per_day,
                                    long_window=month_days, **settings)


def scales(p: Pair, har: dict) -> dict:
    return {"none": None, "ewma": p.ewma, **{name: model.scale(p.candles) for name, model in har.items()}}


def score_pair(p: Pair, har: dict, timeframe: str, gammas=(), powers=(), window=None) -> dict:
    pos, y = p.test, p.y[p.test]
    zero = np.zeros(len(pos))
    window = window or max(720, 12 * p.h)
    tercile = vol_terciles(p.ewma[pos])
    out, candidates = {}, scales(p, har)
    for name, scale in candidates.items():
        kw = {} if scale is None else {"res_scale": scale[pos], "query_scale": scale[pos]}
        out[name] = rolling_intervals(pos, y, pos, zero, p.h, window, LEVELS, 100, True, **kw)
    for power in powers:  # partial normalisation: scores r / s**power, intervals q x s**power
        hs = candidates["har"][pos] ** power
        out[f"har^{power:g}"] = rolling_intervals(pos, y, pos, zero, p.h, window, LEVELS, 100, True, res_scale=hs,
                                                  query_scale=hs)
    served = candidates[SERVED_SCALE[timeframe]]
    for gamma in gammas:
        out[f"aci {gamma:g}"] = aci_intervals(pos, y, None if served is None else served[pos], p.h, window, gamma)
    ok = np.ones(len(pos), bool)
    for name in out:  # every candidate on the same rows
        ok &= np.isfinite(out[name]["lower80"]) & np.isfinite(out[name]["lower95"])
    bq = quantile_baseline(p.y, pos, p.h, BASELINE_DAYS * p.rows_per_day, LEVELS)
    bs = static_baseline(p.y, pos, [(p.train, pos)], p.h, LEVELS)
    rows = {}
    for name, bounds in list(out.items()) + [("baseline_quantile", bq), ("baseline_static", bs)]:
        kept = {k: np.where(ok, bounds[k], np.nan) for k in ("lower80", "upper80", "lower95", "upper95")}
        rows[name] = metrics(y, zero, **kept, tercile=tercile)
    return rows


def _mean(values) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


@click.command()
@click.option("--symbol", "symbols", multiple=True, default=("all",))
@click.option("--timeframe", "timeframes", multiple=True, default=("1h", "24h", "7d", "30d"))
@click.option("--month-days", type=int, default=30, show_default=True,
              help="Days of the HAR model's long component (serving keeps 400 hourly bars: 16 days)")
@click.option("--aci", "gammas", type=float, multiple=True,
              help="Also adaptive conformal inference on the served scale with this step (repeatable)")
@click.option("--power", "powers", type=float, multiple=True,
              help="Also the HAR scale raised to this power (partial normalisation; repeatable)")
@click.option("--window", type=int, default=None, help="Residuals in the conformal window (default max(720, 12 h) rows)")
def main(symbols, timeframes, month_days, gammas, powers, window):
    store = CandleStore(Config().DATABASE_URL)
    assets = resolve_symbols(symbols, stored_assets(store))
    for tf in timeframes:
        pairs = [Pair(build_dataset(store, a, tf)) for a in assets]
        har = {"har-return": fit_har(pairs, month_days, first=True), "har": fit_har(pairs, month_days)}
        scored = [score_pair(p, har, tf, gammas, powers, window) for p in pairs]
        click.echo(f"{tf}: {len(pairs)} assets; HAR coefficients (const, day, week, month[, lags]) "
                   + " ".join(f"{c:.3f}" for c in har["har"].coef[:4 + len(har["har"].lags)])
                   + f"; {sum(r['ewma']['coverage_n_80'] for r in scored)} rows")
        extra = tuple(f"har^{b:g}" for b in powers) + tuple(f"aci {g:g}" for g in gammas)
        for name in SCALES + extra + ("baseline_quantile", "baseline_static"):
            ratio = {lv: _mean(r[name][f"interval_score_{lv}"] / r["baseline_quantile"][f"interval_score_{lv}"]
                               for r in scored) for lv in (80, 95)}
            third = {lv: [_mean(r[name][f"coverage_{lv}_by_vol"][g] for r in scored) for g in range(3)]
                     for lv in (80, 95)}
            click.echo(f"  {name:<18} IS80/bq {ratio[80]:.3f}  IS95/bq {ratio[95]:.3f}  "
                       f"cov80 {_mean(r[name]['coverage_80'] for r in scored):.3f} "
                       f"[{' '.join(f'{c:.3f}' for c in third[80])}]  "
                       f"cov95 {_mean(r[name]['coverage_95'] for r in scored):.3f} "
                       f"[{' '.join(f'{c:.3f}' for c in third[95])}]")


if __name__ == "__main__":
    main()
