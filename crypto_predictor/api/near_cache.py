"""A small per-worker copy of recent prediction cache entries, in front of the shared cache.

A prediction's cache key names everything its answer depends on (asset, timeframe, served
version, newest candle time), so the value under a key never changes: a worker may keep what it
last read or wrote for a few seconds without asking Redis again. That saves the round trip and the
unpickling on every hit (bench_serving --rounds --redis: cached /predict 0.50 x a bare Flask
endpoint without it, 0.70 with it). Entries are kept as the objects themselves, at most ``max_entries`` of them (oldest out
first), for at most ``seconds``; an admin cache clear drops this worker's copy at once and the
other workers' within ``NEAR_CACHE_SECONDS``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class NearCache:
    def __init__(self, seconds: float, max_entries: int, clock=time.monotonic):
        if seconds <= 0 or max_entries <= 0:
            raise ValueError("NearCache needs seconds > 0 and max_entries > 0")
        self.seconds = float(seconds)
        self.max_entries = int(max_entries)
        self._clock = clock
        self._items: OrderedDict = OrderedDict()  # key -> (expires at, value), oldest first
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] <= self._clock():
                del self._items[key]
                return None
            return item[1]

    def set(self, key, value, seconds: float | None = None) -> None:
        """Keep ``value`` for ``seconds`` (never longer than this cache's own limit)."""
        if value is None:
            return
        keep = self.seconds if seconds is None else min(self.seconds, float(seconds))
        if keep <= 0:
            return
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (self._clock() + keep, value)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
