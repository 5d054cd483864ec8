"""From stored candles to the (X, y) a model of one asset and timeframe learns from.

Used by training, evaluation and serving alike so the three can never disagree on
which bars, features or targets a bundle means.

Bars: 1h and 24h are modelled on hourly candles; 7d and 30d on UTC daily candles
(horizons of 7 and 30 bars instead of 168 and 720 overlapping hourly rows, 26x fewer
rows to fit). Measured on the pooled core assets (``bench/bench_bars.py``, README): hourly
bars bring the global ensemble closer to no-change (7d MASE 1.022 against 1.060) but neither
beats it, so the served forecast is the same, at about 5x the fit time. Gaps are filled by
``regularize`` so a shift of h rows is always h hours (or days).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crypto_predictor.errors import DataNotFound, InsufficientData, InvalidInput
from crypto_predictor.features import WARMUP, build_features, make_target, market_index, regularize, resample_daily
from crypto_predictor.symbols import TIMEFRAMES, check_timeframe, resolve
from crypto_predictor.timeutil import parse_time

BAR_HOURS = {"1h": 1, "1d": 24}
CANDLE_COLUMNS = ("open", "high", "low", "close", "outlier")
MIN_ROWS = 60  # fewer usable rows than this cannot be walk-forward evaluated meaningfully
# Context asset for each asset's cross-asset features: BTC leads the market; BTC itself looks at ETH.
CONTEXT_OF = {"bitcoin": "ethereum"}
DEFAULT_CONTEXT = "bitcoin"
# Global models see the same cross-asset context for every asset (bitcoin's own candles included for
# bitcoin), so every asset's rows have the same columns.
GLOBAL_CONTEXT = ("bitcoin", "ethereum")
MARKET = "market"  # name of the equal-weighted market index as a context series


def bar_for(timeframe: str) -> str:
    return "1d" if TIMEFRAMES[check_timeframe(timeframe)] >= 168 else "1h"


def horizon_rows(timeframe: str) -> int:
    return TIMEFRAMES[timeframe] // BAR_HOURS[bar_for(timeframe)]


def context_asset(asset: str) -> str:
    return CONTEXT_OF.get(asset, DEFAULT_CONTEXT)


@dataclass
class Dataset:
    asset: str
    timeframe: str
    bar: str
    horizon: int  # in bars
    X: pd.DataFrame  # rows with every feature defined and the target realised
    y: pd.Series
    close: pd.Series  # close at each row of X
    context: list  # context asset names used in the features
    sentiment: bool = False  # the Fear & Greed features are among the columns
    candles: pd.DataFrame | None = None  # open, high, low, close, outlier at each row of X (the volatility's input)

    @property
    def step(self) -> pd.Timedelta:
        """Length of one bar: a shift of ``horizon`` rows is ``horizon * step`` of time."""
        return pd.Timedelta(hours=BAR_HOURS[self.bar])

    @property
    def data_range(self) -> tuple[str, str]:
        return self.X.index[0].isoformat(), self.X.index[-1].isoformat()


def bars(candles: pd.DataFrame, bar: str) -> pd.DataFrame:
    """Regular hourly candles, or complete UTC days, from stored hourly candles."""
    regular = regularize(candles[["open", "high", "low", "close", "volume", "outlier"]], "1h")
    return resample_daily(regular) if bar == "1d" else regular


def context_usable(n_candles: int) -> bool:
    """Whether a context asset with this many hourly candles contributes features at all."""
    return n_candles > WARMUP


def feature_frame(candles: pd.DataFrame, context_candles: dict, bar: str,
                  sentiment: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, bars) on the bar grid; ``context_candles`` maps name -> hourly candles; ``sentiment``:
    the Fear & Greed value by day when the features include it."""
    ctx = {name: bars(frame, bar) for name, frame in context_candles.items() if context_usable(len(frame))}
    return features_from_bars(bars(candles, bar), ctx, sentiment)


def features_from_bars(own: pd.DataFrame, context_bars: dict,
                       sentiment: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``feature_frame`` from bars already made (serving reuses a context asset's bars across pairs);
    ``context_bars`` holds only usable context assets."""
    return build_features(own, context_bars, sentiment), own


def load_candles(store, asset: str, start=None, end=None) -> pd.DataFrame:
    frame = store.load(asset, "1h", start, end)
    if frame.empty:
        raise DataNotFound(f"no hourly candles stored for {asset}; run ingest first", asset=asset)
    return frame


def market_candles(store, assets, end=None) -> pd.DataFrame:
    """``features.market_index`` of these assets' stored hourly closes (up to ``end``)."""
    return market_index({a: store.load(a, "1h", None, end)["close"] for a in assets})


def build_dataset(store, symbol, timeframe: str, days: int | None = None, end=None, context_assets=None,
                  context_frames=None, bar: str | None = None, sentiment: pd.Series | None = None) -> Dataset:
    """Features and targets for one asset and timeframe from the store.

    ``days`` keeps the newest N days of rows (features still use the history before them);
    ``end`` ignores candles after it (for reproducible re-tests); ``context_assets``: the
    cross-asset context (default ``context_asset(asset)``; global models pass ``GLOBAL_CONTEXT``);
    ``context_frames``: further context series already made (name -> hourly frame with ``close``);
    ``bar``: "1h" or "1d" instead of the timeframe's own (``bar_for``; benches compare the two);
    ``sentiment``: the Fear & Greed value by UTC day, to add its features (causal, never drops a row).
    """
    asset = resolve(symbol).id
    bar = bar_for(timeframe) if bar is None else bar
    if bar not in BAR_HOURS:
        raise InvalidInput(f"bar must be one of {', '.join(BAR_HOURS)}, got {bar!r}")
    h = TIMEFRAMES[check_timeframe(timeframe)] // BAR_HOURS[bar]
    candles = load_candles(store, asset, end=end)
    names = [context_asset(asset)] if context_assets is None else list(context_assets)
    context = {}
    for ctx_name in names:
        ctx = candles if ctx_name == asset else store.load(ctx_name, "1h", None, end)
        if len(ctx):
            context[ctx_name] = ctx
    for ctx_name, ctx in (context_frames or {}).items():
        context[ctx_name] = ctx if end is None else ctx[ctx.index <= parse_time(end, "end")]
    X, own = feature_frame(candles, context, bar, sentiment)
    y = make_target(own["close"], h)
    ok = X.notna().all(axis=1).to_numpy() & y.notna().to_numpy()
    if days is not None:
        ok &= (X.index > X.index[-1] - pd.Timedelta(days=days))
    if ok.sum() < MIN_ROWS:
        raise InsufficientData(f"{asset} {timeframe}: only {int(ok.sum())} usable rows; ingest more history",
                           asset=asset, timeframe=timeframe)
    rows = np.flatnonzero(ok)
    return Dataset(asset, timeframe, bar, h, X.iloc[rows], y.iloc[rows], own["close"].iloc[rows],
                   sorted(k for k in context if context_usable(len(context[k]))), sentiment is not None,
                   own[list(CANDLE_COLUMNS)].iloc[rows])
