"""Keeping the served assets' candles current off the request path.

A request never waits on a provider: it reads the store (``PredictionService._fresh``). With a live
source, one daemon thread per worker runs ``LiveRefresher.run_once`` every LIVE_REFRESH_SECONDS:
it takes the database lock ``live-refresh`` (the workers and instances of a deployment take turns
instead of all asking the provider at once; a holder that died is taken over after the lock's
TTL), catches up every served asset that has a newer closed candle (``market.ingest.catch_up``,
under the provider client's deadline and circuit breaker) and lets the lock go. One asset
failing is logged and does not stop the others; the next round tries again.
"""

from __future__ import annotations

import logging
import threading

from crypto_predictor.errors import CryptoPredictorError
from crypto_predictor.market.ingest import catch_up
from crypto_predictor.storage.lock import JobLock

log = logging.getLogger(__name__)

LOCK_NAME = "live-refresh"
INITIAL_DAYS = 30  # an asset with no stored candles starts this far back


class LiveRefresher:
    """``assets()``: the assets to keep current (those served now); ``now()``: a UTC Timestamp."""

    def __init__(self, source, store, assets, now, every_seconds: float, lock_ttl_seconds: float | None = None):
        self.source = source
        self.store = store
        self.assets = assets
        self.now = now
        self.every = float(every_seconds)
        self.lock_ttl = float(lock_ttl_seconds or max(120.0, 4 * self.every))
        self.last: dict = {}  # the last round: {"at", "assets": {asset: inserted or error text}} or skipped
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> dict:
        """One round; returns what it did (``{"skipped": ...}`` when another worker holds the lock)."""
        lock = JobLock(self.store.engine, LOCK_NAME, ttl_seconds=self.lock_ttl)
        try:
            if not lock.try_acquire():
                self.last = {"at": self.now().isoformat(), "skipped": "another worker is refreshing"}
                return self.last
        except Exception as exc:  # the store is down: requests will say so; nothing to refresh into
            self.last = {"at": self.now().isoformat(), "skipped": f"store unavailable ({type(exc).__name__})"}
            return self.last
        done = {}
        try:
            now = self.now()
            for asset in self.assets():
                try:
                    done[asset] = catch_up(self.source, self.store, asset, "1h", now, INITIAL_DAYS).inserted
                except CryptoPredictorError as exc:
                    log.warning("live refresh of %s failed: %s", asset, exc.message)
                    done[asset] = exc.message
                except Exception as exc:  # a database error mid-round: logged, retried next round
                    log.warning("live refresh of %s failed: %s", asset, type(exc).__name__)
                    done[asset] = type(exc).__name__
        finally:
            try:
                lock.release()
            except Exception:  # the TTL frees it if the store is gone
                pass
        self.last = {"at": now.isoformat(), "assets": done}
        return self.last

    def _loop(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:  # never let the thread die: the next round may work
                log.exception("live refresh round failed")
            if self._stop.wait(self.every):
                return

    def start(self) -> None:
        """Start the background thread (once); its first round runs at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="live-refresh", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

