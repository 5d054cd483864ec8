"""CoinGecko /coins/{id}/market_chart, turned into candles.

CoinGecko picks the granularity itself (5-minutely for 1 day, hourly for
2-90 days, daily beyond), so we record the interval we actually got. Prices are
USD point samples: a point observed just after a boundary closes the candle
that ended there. Volumes are CoinGecko's rolling 24h USD volume, spread evenly
over the interval; they are estimates, not exchange volumes.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from crypto_predictor.errors import DataNotFound, MarketDataUnavailable
from crypto_predictor.market.frames import FetchResult, empty_candles, normalise
from crypto_predictor.market.http import ProviderClient
from crypto_predictor.symbols import INTERVALS_MS, resolve
from crypto_predictor.timeutil import to_ms, to_utc

# A sample this long after a boundary still counts as the price at that boundary.
SNAP_TOLERANCE_MS = 10 * 60_000


class CoinGeckoSource:
    name = "coingecko"

    def __init__(self, config, session=None, clock=time.time):
        self.base_url = config.COINGECKO_BASE_URL.rstrip("/")
        self.client = ProviderClient(self.name, config, session)
        self.headers = {}
        if config.COINGECKO_API_KEY:
            header = "x-cg-pro-api-key" if config.COINGECKO_API_PLAN == "pro" else "x-cg-demo-api-key"
            self.headers[header] = config.COINGECKO_API_KEY
        self._clock = clock

    def market_chart(self, coin_id: str, days: int) -> dict:
        body = self.client.get_json(
            f"{self.base_url}/coins/{coin_id}/market_chart",
            params={"vs_currency": "usd", "days": days}, headers=self.headers,
        )
        if not isinstance(body, dict) or not isinstance(body.get("prices"), list):
            raise MarketDataUnavailable(
                "coingecko: unexpected market_chart payload (no 'prices' list)",
                provider=self.name, reason="unexpected payload",
            )
        return body

    def fetch(self, symbol, interval="1h", start=None, end=None, progress=None) -> FetchResult:
        asset = resolve(symbol)
        if asset.coingecko_id is None:
            raise DataNotFound(f"coingecko: the CoinGecko id of {asset.ticker} is not known here; ingest it from "
                               "binance or csv", asset=asset.id)
        now_ms = int(self._clock() * 1000)
        start_ms = now_ms - 30 * 86_400_000 if start is None else to_ms(start)
        # One day would come back 5-minutely, which we do not store.
        days = max(2, math.ceil((now_ms - start_ms) / 86_400_000))
        body = self.market_chart(asset.coingecko_id, days)
        if progress is not None:
            progress(len(body["prices"]))
        candles, got = points_to_candles(body["prices"], body.get("total_volumes") or [], now_ms)
        notes = []
        if got != interval:
            notes.append(f"requested {interval}, CoinGecko returned {got} granularity for {days} days")
        if not candles.empty:
            lo = to_utc(start_ms)
            hi = to_utc(now_ms if end is None else end)
            candles = candles[(candles["open_time"] >= lo) & (candles["open_time"] <= hi)]
        return FetchResult(asset.id, got, candles.reset_index(drop=True), self.name, notes)


def detect_interval(times_ms: np.ndarray) -> str:
    if len(times_ms) < 2:
        return "1h"
    spacing = float(np.median(np.diff(times_ms)))
    return "1d" if spacing >= 12 * 3_600_000 else "1h"


def points_to_candles(prices, volumes, now_ms: int):
    """Bucket (ms, price) samples into closed candles; returns (frame, interval)."""
    try:
        pts = pd.DataFrame(prices, columns=["t", "price"]).astype({"t": "int64", "price": "float64"})
    except (ValueError, TypeError) as exc:
        raise MarketDataUnavailable(
            "coingecko: prices are not [timestamp, price] pairs", provider="coingecko",
            reason="unexpected payload",
        ) from exc
    pts = pts.dropna().sort_values("t").drop_duplicates("t", keep="last")
    interval = detect_interval(pts["t"].to_numpy())
    if pts.empty:
        return empty_candles(), interval
    step = INTERVALS_MS[interval]
    pts["bucket"] = (pts["t"] - SNAP_TOLERANCE_MS) // step * step
    grouped = pts.groupby("bucket")["price"]
    frame = pd.DataFrame({"close": grouped.last(), "high": grouped.max(), "low": grouped.min()})
    # The open is the previous candle's close; the first bucket has none, so it is dropped.
    frame["open"] = frame["close"].shift(1)
    frame = frame.dropna(subset=["open"])
    frame["high"] = frame[["high", "open"]].max(axis=1)
    frame["low"] = frame[["low", "open"]].min(axis=1)
    frame = frame[frame.index + step <= now_ms]  # only closed candles
    vol = pd.DataFrame(volumes, columns=["t", "v"]) if len(volumes) else pd.DataFrame(columns=["t", "v"])
    if not vol.empty:
        vol["bucket"] = (vol["t"].astype("int64") - SNAP_TOLERANCE_MS) // step * step
        per_interval = vol.groupby("bucket")["v"].last().astype("float64") * (step / 86_400_000)
        frame["quote_volume"] = per_interval.reindex(frame.index)
        frame["volume"] = frame["quote_volume"] / frame["close"]
    else:
        frame["quote_volume"] = np.nan
        frame["volume"] = np.nan
    frame["open_time"] = pd.to_datetime(frame.index, unit="ms", utc=True)
    return normalise(frame.reset_index(drop=True)), interval
