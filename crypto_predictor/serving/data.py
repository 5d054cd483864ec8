"""Every memo of a serving worker: what predictions read from the candle store and what is derived
from it (bars, feature rows, model inputs, interval statistics), remembered between requests.

Steady state (no new candle) an uncached prediction then costs the models and the interval
maths only: the newest candle times come from a short memo, and the candle windows, bars
and feature rows they key are kept until they change.

Freshness. ``latest`` asks the store for the newest hourly candle time of every asset a
request needs in ONE query and remembers each answer for ``ttl`` seconds
(LATEST_TIME_TTL_SECONDS, default 1; 0 asks every time). A candle stored by another process
(an ingest job, any worker's background live refresh) is therefore seen at most ``ttl``
seconds late, and a response-cache key built from it (api/predict.py) can outlive that candle
by the same bound. A caller that stored candles itself and needs them at once calls
``forget(asset)``: it drops the memo, every window built from that asset and every feature row
(any pair may use the asset as context).

Invalidation of the derived data (windows, bars, and the service's feature rows). Each
entry is keyed by the newest candle time of its asset (and of the context assets for
features): a newly stored candle gives a new key, so nothing computed from older candles
is used again. An upsert that corrects an OLDER candle leaves the newest time unchanged, so
it cannot be seen in the key; such corrections are picked up when the next candle lands or,
at the latest, when everything is dropped every ``max_age`` seconds (FEATURE_CACHE_SECONDS,
default 300; 0 recomputes on every request). ``expired()`` drops the windows, bars,
the feature rows and inputs on the same schedule. The interval statistics (post-training
residuals) are the exception: they are refreshed with the next candle only, since rebuilding
them runs the models over the whole residual window. After a model swap ``keep_versions``
drops the inputs and statistics of versions no longer loaded.
"""

from __future__ import annotations

import time

import pandas as pd
from sqlalchemy import func, select

from crypto_predictor.errors import DataUnavailable, InvalidInput
from crypto_predictor.datasets import bars as make_bars, context_usable
from crypto_predictor.market.sentiment import SentimentStore
from crypto_predictor.storage.tables import candles
from crypto_predictor.symbols import TIMEFRAMES
from crypto_predictor.timeutil import iso, to_utc

INTERVAL = "1h"
SENTIMENT_TTL = 60.0


class ServingData:
    def __init__(self, store, ttl: float = 1.0, max_age: float = 300.0, monotonic=time.monotonic):
        self.store = store
        self.ttl = float(ttl)
        self.max_age = float(max_age)
        self._monotonic = monotonic
        self._latest: dict = {}  # asset -> (monotonic time asked, newest open time or None)
        self._windows: dict = {}  # asset -> (newest open time, first open time, hourly candles)
        self._bars: dict = {}  # (asset, bar) -> ((first, newest open time), bars, number of hourly candles)
        self._frames: dict = {}  # (asset, bar) -> (key, features, bars) of the newest candles
        self._inputs: dict = {}  # (version, asset, timeframe) -> (key, PairInputs, data_as_of, target_time)
        self._stats: dict = {}  # (version, asset, timeframe) -> (newest bar, IntervalStats | None)
        self._sentiment = None  # (monotonic time read, the stored Fear & Greed values by day)
        self._cleared = monotonic()

    # ---------------------------------------------------------------- newest candle times

    def query_latest(self, assets) -> dict:
        """Newest hourly open time per asset (None: no candle), one query for all, memo refreshed."""
        assets = list(dict.fromkeys(assets))
        if not assets:
            return {}
        c = candles.c
        # One scalar subquery per asset: each is an index lookup (max over the primary key),
        # where a GROUP BY would scan every candle of the assets.
        columns = [select(func.max(c.open_time)).where(c.asset == a, c.interval == INTERVAL)
                   .scalar_subquery().label(f"a{i}") for i, a in enumerate(assets)]
        with self.store.engine.connect() as conn:
            row = conn.execute(select(*columns)).one()
        now = self._monotonic()
        out = {}
        for asset, value in zip(assets, row):
            out[asset] = None if value is None else to_utc(value)
            self._latest[asset] = (now, out[asset])
        return out

    def latest(self, assets) -> dict:
        """Like ``query_latest`` but answers from the memo for assets asked less than ``ttl`` ago."""
        now = self._monotonic()
        out, stale = {}, []
        for asset in assets:
            memo = self._latest.get(asset)
            if memo is not None and now - memo[0] < self.ttl:
                out[asset] = memo[1]
            else:
                stale.append(asset)
        if stale:
            out.update(self.query_latest(stale))
        return out

    def forget(self, asset: str) -> None:
        """This worker stored candles of ``asset``: ask again, rebuild what was built from it."""
        self._latest.pop(asset, None)
        self._windows.pop(asset, None)
        for key in [k for k in self._bars if k[0] == asset]:
            self._bars.pop(key, None)
        self._frames.clear()
        self._inputs.clear()

    def keep_versions(self, versions) -> None:
        """Forget the inputs and interval statistics of bundles no longer loaded."""
        keep = set(versions)
        self._stats = {k: v for k, v in self._stats.items() if k[0] in keep}
        self._inputs = {k: v for k, v in self._inputs.items() if k[0] in keep}

    def sentiment(self) -> pd.Series:
        """The stored Fear & Greed values, re-read at most every SENTIMENT_TTL seconds (one lands a day).

        A store without any gives an empty series: the features then mark the value missing (as
        training does for a day it lacks) and the prediction goes on."""
        now = self._monotonic()
        if self._sentiment is None or now - self._sentiment[0] >= SENTIMENT_TTL:
            self._sentiment = (now, SentimentStore(self.store.engine).load())
        return self._sentiment[1]

    def sentiment_key(self, pair):
        """What a pair's feature rows depend on besides candles: the newest stored sentiment day."""
        if not pair.sentiment:
            return None
        values = self.sentiment()
        return values.index[-1] if len(values) else None

    # ---------------------------------------------------------------- derived data

    def expired(self) -> bool:
        """True once every ``max_age`` seconds, after dropping every window, bar frame and feature row."""
        now = self._monotonic()
        if now - self._cleared < self.max_age:
            return False
        self._cleared = now
        self._windows.clear()
        self._bars.clear()
        self._frames.clear()
        self._inputs.clear()
        return True

    def window(self, asset: str, start: pd.Timestamp, latest: pd.Timestamp) -> pd.DataFrame:
        """Hourly candles start..latest; one load per asset until a newer candle is stored."""
        cached = self._windows.get(asset)
        if cached is None or cached[0] != latest or cached[1] > start:
            frame = self.store.load(asset, INTERVAL, start, latest)
            self._windows[asset] = cached = (latest, start, frame)
        frame = cached[2]
        return frame if cached[1] == start else frame.loc[start:]

    def bars(self, asset: str, bar: str, start: pd.Timestamp, latest: pd.Timestamp) -> tuple[pd.DataFrame, int]:
        """(``datasets.bars`` of the window start..latest, its number of hourly candles), built once:
        a context asset's bars serve every pair that looks at it."""
        key = (asset, bar)
        cached = self._bars.get(key)
        if cached is None or cached[0] != (start, latest):
            window = self.window(asset, start, latest)
            cached = self._bars[key] = ((start, latest), make_bars(window, bar), len(window))
        return cached[1], cached[2]

    # ---------------------------------------------------------------- per pair

    def features(self, pair, start: pd.Timestamp, latest: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(features, bars) for the pair's window; 1h and 24h (7d and 30d) pairs of an asset share
        them, and a context asset's bars are made once for every pair using them."""
        key = (pair.asset, pair.bar, start, tuple((a, latest[a]) for a in sorted(latest)), self.sentiment_key(pair))
        slot = (pair.asset, pair.bar, pair.sentiment)
        cached = self._frames.get(slot)
        if cached is None or cached[0] != key:
            own, _ = self.bars(pair.asset, pair.bar, start, latest[pair.asset])
            ctx = {}
            for name in pair.context:
                frame, n_candles = self.bars(name, pair.bar, start, latest[name])
                if context_usable(n_candles):
                    ctx[name] = frame
            sentiment = self.sentiment() if pair.sentiment else None
            cached = self._frames[slot] = (key, *pair.frame_from_bars(own, ctx, sentiment))
        return cached[1], cached[2]

    def pair_inputs(self, pair, latest: dict) -> tuple:
        """(PairInputs, data_as_of, target_time) of the pair's newest bar, made once per newest candle times."""
        # the window start follows from these
        key = (tuple((a, latest[a]) for a in sorted(latest)), self.sentiment_key(pair))
        slot = (pair.version, pair.asset, pair.timeframe)
        entry = self._inputs.get(slot)
        if entry is None or entry[0] != key:
            try:
                inputs = pair.inputs(*self.features(pair, pair.window_start(latest[pair.asset]), latest))
            except InvalidInput as exc:  # stored candles the features refuse: our fault, not the client's
                raise DataUnavailable(f"{pair.asset}: the stored candles cannot be used for a prediction now "
                                      f"({exc.message}); try again later", asset=pair.asset) from exc
            as_of = inputs.bar_time + pair.step
            entry = self._inputs[slot] = (key, inputs, iso(as_of),
                                          iso(as_of + pd.Timedelta(hours=TIMEFRAMES[pair.timeframe])))
        return entry[1:]

    def interval_stats(self, pair, newest_bar: pd.Timestamp, latest: dict):
        """The pair's conformal offsets from stored plus post-training residuals, once per newest bar."""
        key = (pair.version, pair.asset, pair.timeframe)
        cached = self._stats.get(key)
        if cached is not None and cached[0] == newest_bar:
            return cached[1]
        span = pair.post_training_range(newest_bar)
        post, scales = None, None
        if span is not None:
            start = pair.window_start(latest[pair.asset], span[0] - (pair.context_rows - 1) * pair.step)
            own = self.window(pair.asset, start, latest[pair.asset])
            ctx = {c: self.window(c, start, latest[c]) for c in pair.context}
            post, scales = pair.post_training_residuals(own, ctx, *span,
                                                        self.sentiment() if pair.sentiment else None)
        stats = pair.interval_stats(post, scales)
        self._stats[key] = (newest_bar, stats)
        return stats
