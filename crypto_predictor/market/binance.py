"""Binance spot klines: GET /api/v3/klines, paged, closed candles only."""

from __future__ import annotations

import time

import pandas as pd

from crypto_predictor.errors import MarketDataUnavailable, ProviderBanned
from crypto_predictor.market.frames import FetchResult, empty_candles, normalise
from crypto_predictor.timeutil import to_ms
from crypto_predictor.market.http import ProviderClient
from crypto_predictor.symbols import INTERVALS_MS, check_interval, resolve

MAX_LIMIT = 1000


def _check_ban(response):
    if response.status_code == 418:
        raise ProviderBanned(
            "binance: HTTP 418, this IP is banned for ignoring rate limits; "
            "stop and wait before trying again",
            provider="binance", reason=response.text[:300], status=418,
        )


class BinanceSource:
    name = "binance"

    def __init__(self, config, session=None, clock=time.time):
        self.config = config
        self.base_url = config.BINANCE_BASE_URL.rstrip("/")
        self.client = ProviderClient(self.name, config, session)
        self._clock = clock

    def _page(self, pair, interval, start_ms, end_ms):
        rows = self.client.get_json(
            f"{self.base_url}/api/v3/klines",
            params={"symbol": pair, "interval": interval, "startTime": start_ms,
                    "endTime": end_ms, "limit": MAX_LIMIT},
            on_status=_check_ban,
        )
        if not isinstance(rows, list) or any(not isinstance(r, list) or len(r) < 9 for r in rows):
            raise MarketDataUnavailable(
                "binance: unexpected klines payload (expected a list of 12-field arrays)",
                provider=self.name, reason="unexpected payload",
            )
        return rows

    def fetch(self, symbol, interval="1h", start=None, end=None, progress=None) -> FetchResult:
        """Candles with open time in [start, end], paging 1000 at a time.

        Only candles whose close time has passed are kept: the newest kline is
        still forming and would be stored with a wrong close.
        """
        asset = resolve(symbol)
        step = INTERVALS_MS[check_interval(interval)]
        now_ms = int(self._clock() * 1000)
        end_ms = now_ms if end is None else to_ms(end)
        start_ms = end_ms - 30 * 86_400_000 if start is None else to_ms(start)
        rows, cursor = [], start_ms
        while cursor <= end_ms:
            page = self._page(asset.pair, interval, cursor, end_ms)
            if not page:
                break
            rows.extend(page)
            if progress is not None:
                progress(len(page))
            last_open = int(page[-1][0])
            if len(page) < MAX_LIMIT or last_open + step > end_ms:
                break
            cursor = last_open + step
        if not rows:
            return FetchResult(asset.id, interval, empty_candles(), self.name)
        frame = pd.DataFrame(
            [r[:9] for r in rows],
            columns=["open_time", "open", "high", "low", "close", "volume",
                     "close_time", "quote_volume", "trades"],
        )
        frame = frame[frame["close_time"].astype("int64") < now_ms]
        frame["open_time"] = pd.to_datetime(frame["open_time"].astype("int64"), unit="ms", utc=True)
        return FetchResult(asset.id, interval, normalise(frame), self.name)
