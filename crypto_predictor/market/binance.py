"""Binance spot klines: GET /api/v3/klines, paged, closed candles only."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from crypto_predictor.errors import MarketDataUnavailable, ProviderBanned
from crypto_predictor.market.frames import FetchResult, empty_candles, normalise
from crypto_predictor.timeutil import to_ms
from crypto_predictor.market.http import ProviderClient
from crypto_predictor.symbols import INTERVALS_MS, check_interval, resolve

MAX_LIMIT = 1000
KLINE_FIELDS = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "trades"]
REQUIRED_FIELDS = KLINE_FIELDS[:7]


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
        pages, cursor = [], start_ms
        while cursor <= end_ms:
            page = self._page(asset.pair, interval, cursor, end_ms)
            if not page:
                break
            pages.append(self._numeric(page))
            if progress is not None:
                progress(len(page))
            last_open = int(pages[-1]["open_time"].iloc[-1])
            if len(page) < MAX_LIMIT or last_open + step > end_ms or last_open < cursor:
                break
            cursor = last_open + step
        if not pages:
            return FetchResult(asset.id, interval, empty_candles(), self.name)
        frame = pd.concat(pages, ignore_index=True)
        closed = frame["close_time"] < now_ms  # the newest kline is still forming
        inside = (frame["open_time"] >= start_ms) & (frame["open_time"] <= end_ms)
        notes = []
        if (~inside).any():
            outside = frame.loc[~inside, "open_time"]
            notes.append(f"dropped {int((~inside).sum())} row(s) outside the requested window "
                         f"(open times {_iso(outside.min())} .. {_iso(outside.max())})")
        frame = frame[closed & inside].copy()
        frame["open_time"] = pd.to_datetime(frame["open_time"].astype("int64"), unit="ms", utc=True)
        return FetchResult(asset.id, interval, normalise(frame), self.name, notes=notes)

    def _numeric(self, rows) -> pd.DataFrame:
        """The klines' first 9 fields as numbers; a field that is not one makes the page unusable."""
        raw = pd.DataFrame([r[:9] for r in rows], columns=KLINE_FIELDS)
        frame = raw.apply(pd.to_numeric, errors="coerce")
        # quote_volume and trades are optional (features never use them): missing or unreadable is NaN.
        bad = frame.isna().to_numpy() & np.isin(KLINE_FIELDS, REQUIRED_FIELDS)[None, :]
        # Times must be finite; an infinite price is a number, rejected later by validation with a reason.
        bad[:, [0, 6]] |= ~np.isfinite(frame[["open_time", "close_time"]].to_numpy())
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            raise MarketDataUnavailable(
                f"binance: kline {i} has a malformed {KLINE_FIELDS[j]}: {rows[i][j]!r} (expected a number)",
                provider=self.name, reason="malformed kline")
        return frame


def _iso(ms) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat()
