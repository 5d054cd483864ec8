"""A real HTTP server on 127.0.0.1 standing in for Binance, CoinGecko and alternative.me's Fear & Greed API.

It serves payloads in the providers' own shapes built from the shared candles,
and can be told to misbehave (429 with Retry-After, 5xx, 418, slow answers,
malformed JSON) for the next N requests to a path.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd

HOUR_MS = 3_600_000


def klines_from_candles(candles: pd.DataFrame) -> list[list]:
    """Binance kline arrays (12 fields, prices as strings) from a candle frame."""
    open_ms = candles["open_time"].dt.as_unit("ms").astype("int64").tolist()
    cols = [candles[c].tolist() for c in ("open", "high", "low", "close", "volume", "quote_volume")]
    trades = candles["trades"].fillna(0).astype("int64").tolist()
    return [
        [t, *(f"{col[i]:.8f}" for col in cols[:5]), t + HOUR_MS - 1, f"{cols[5][i]:.8f}", trades[i], "0", "0", "0"]
        for i, t in enumerate(open_ms)
    ]


class FakeMarket:
    def __init__(self, candles_by_pair: dict[str, pd.DataFrame], coingecko_ids: dict[str, str], now_ms: int,
                 fear_greed: pd.DataFrame | None = None):
        # Rows of the shared fear_greed.csv (timestamp, value, value_classification) up to now.
        self.fear_greed = fear_greed
        self.klines = {pair: klines_from_candles(df) for pair, df in candles_by_pair.items()}
        self.candles = {cid: candles_by_pair[pair] for cid, pair in coingecko_ids.items() if pair in candles_by_pair}
        self.now_ms = now_ms
        self.faults: dict[str, deque] = defaultdict(deque)
        self.requests: list[tuple[str, dict, dict]] = []  # (path, query, headers)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def fail(self, path_prefix: str, *faults):
        """Queue faults for the next requests whose path starts with path_prefix.

        A fault is a dict: {"status": 429, "headers": {...}, "body": "..."} or
        {"sleep": seconds} or {"raw": "not json"} or {"drip": seconds between bytes} (the real
        answer, headers at once, then the body one byte at a time).
        """
        self.faults[path_prefix].extend(faults)

    def count(self, path_prefix: str) -> int:
        return sum(1 for p, _, _ in self.requests if p.startswith(path_prefix))

    def _take_fault(self, path):
        with self._lock:
            for prefix, queue in self.faults.items():
                if path.startswith(prefix) and queue:
                    return queue.popleft()
        return None

    # -- payloads -------------------------------------------------------------------------
    def binance_klines(self, q):
        pair = q.get("symbol")
        if pair not in self.klines:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        start = int(q.get("startTime", 0))
        end = int(q.get("endTime", 2**62))
        limit = min(int(q.get("limit", 500)), 1000)
        rows = [r for r in self.klines[pair] if start <= r[0] <= end][:limit]
        return 200, rows

    def coingecko_chart(self, coin, q):
        if coin not in self.candles:
            return 404, {"error": "coin not found"}
        days = float(q.get("days", 1))
        df = self.candles[coin]
        t_close = df["open_time"].dt.as_unit("ms").astype("int64").to_numpy() + HOUR_MS
        keep = t_close >= self.now_ms - days * 86_400_000
        t_close, close = t_close[keep], df["close"].to_numpy()[keep]
        vol24 = pd.Series(df["quote_volume"].to_numpy()[keep]).rolling(24, min_periods=1).sum().to_numpy()
        if days > 90:  # CoinGecko's automatic granularity: daily beyond 90 days
            daily = (t_close % 86_400_000) == 0
            t_close, close, vol24 = t_close[daily], close[daily], vol24[daily]
        # Samples land a few seconds after the boundary, as CoinGecko's do.
        jitter = np.full(len(t_close), 23_456)
        prices = [[int(t + j), float(p)] for t, j, p in zip(t_close, jitter, close)]
        prices.append([int(self.now_ms), float(close[-1]) if len(close) else 0.0])  # "now" sample
        vols = [[int(t + j), float(v)] for t, j, v in zip(t_close, jitter, vol24)]
        return 200, {"prices": prices, "market_caps": [], "total_volumes": vols}

    def fng(self, q):
        """alternative.me's /fng/: newest first, ``limit`` entries (0: all), values as strings; the day in
        progress comes with ``time_until_update`` as the real API's does."""
        if self.fear_greed is None:
            return 404, {"error": "no fear and greed data"}
        try:
            limit = int(q.get("limit", 1))
        except ValueError:
            return 200, {"name": "Fear and Greed Index", "data": [], "metadata": {"error": "Invalid limit"}}
        rows = self.fear_greed[self.fear_greed["timestamp"] * 1000 <= self.now_ms].iloc[::-1]
        rows = rows if limit == 0 else rows.head(limit)
        data = [{"value": str(int(r.value)), "value_classification": r.value_classification,
                 "timestamp": str(int(r.timestamp))} for r in rows.itertuples()]
        if data:
            data[0]["time_until_update"] = str(86_400 - (self.now_ms // 1000) % 86_400)
        return 200, {"name": "Fear and Greed Index", "data": data, "metadata": {"error": None}}

    def _handler(self):
        market = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            drip = None  # seconds between the body's bytes, for a "drip" fault

            def _send(self, status, payload, headers=None, raw=None):
                body = raw.encode() if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.end_headers()
                if self.drip is None:
                    self.wfile.write(body)
                    return
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(self.drip)
                except OSError:  # the client gave up: that is the point
                    pass

            def do_GET(self):
                parsed = urlparse(self.path)
                q = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
                with market._lock:
                    market.requests.append((parsed.path, q, dict(self.headers)))
                fault = market._take_fault(parsed.path)
                if fault is not None:
                    if "sleep" in fault:
                        time.sleep(fault["sleep"])
                    elif "drip" in fault:
                        self.drip = fault["drip"]
                    elif "raw" in fault:
                        return self._send(200, None, raw=fault["raw"])
                    else:
                        return self._send(fault["status"], fault.get("body", {"msg": "fault"}),
                                          fault.get("headers"))
                if parsed.path == "/api/v3/klines":
                    return self._send(*market.binance_klines(q))
                if parsed.path in ("/fng", "/fng/"):
                    return self._send(*market.fng(q))
                parts = parsed.path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == "coins" and parts[2] == "market_chart":
                    return self._send(*market.coingecko_chart(parts[1], q))
                return self._send(404, {"error": f"no route {parsed.path}"})

        return Handler
