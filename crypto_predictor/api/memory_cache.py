"""The in-process response cache, bounded by bytes as well as by entries.

Flask-Caching's SimpleCache bounds only the number of entries (``CACHE_THRESHOLD``, 500): one
365-day hourly analysis answer pickles to 1.6 MB, so a worker could hold a gigabyte of them.
``BoundedMemoryCache`` also keeps the pickled total under ``CACHE_MAX_BYTES`` (oldest entries go
first) and does not keep an entry larger than a quarter of it. Redis (``CACHE_REDIS_URL``) is
bounded by its own ``maxmemory``.
"""

from __future__ import annotations

from flask_caching.backends.simplecache import SimpleCache

DEFAULT_MAX_BYTES = 32 * 1024 * 1024


class BoundedMemoryCache(SimpleCache):
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, **kwargs):
        super().__init__(**kwargs)
        self.max_bytes = int(max_bytes)

    @classmethod
    def factory(cls, app, config, args, kwargs):
        kwargs.update(threshold=config["CACHE_THRESHOLD"], max_bytes=config.get("CACHE_MAX_BYTES", DEFAULT_MAX_BYTES))
        return cls(*args, **kwargs)

    def stored_bytes(self) -> int:
        with self._lock:
            return sum(len(item[1]) for item in self._cache.values())

    def set(self, key, value, timeout=None):
        with self._lock:
            if not super().set(key, value, timeout):
                return False
            if len(self._cache[key][1]) > self.max_bytes // 4:
                del self._cache[key]  # one answer this large would push out everything else
                return False
            total = self.stored_bytes()
            for old in list(self._cache):  # insertion order: the oldest first
                if total <= self.max_bytes:
                    break
                if old != key:
                    total -= len(self._cache.pop(old)[1])
            return True
