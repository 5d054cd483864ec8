"""The one way market-data clients talk HTTP: a deadline per call, bounded retries, a circuit breaker.

urllib3's Retry does the backoff (exponential, with jitter) and honours Retry-After; on top of it:

- every call has an overall deadline (``HTTP_DEADLINE``): connect, retries, backoff, Retry-After
  waits and the body, read a chunk at a time, so a provider dripping one byte a second cannot
  hold us past it (each single read is still bounded by the read timeout);
- a Retry-After longer than ``HTTP_MAX_RETRY_AFTER`` means "unavailable now": we do not wait;
- a circuit breaker (pybreaker) per client stops calling a provider after
  ``HTTP_BREAKER_FAILURES`` failed calls in a row, for ``HTTP_BREAKER_RESET_SECONDS``; then one
  trial call decides whether it closes again. A provider's "no" to a bad request (4xx other
  than 408/429) is an answer, not a failure, and does not count.

Every failure is a MarketDataUnavailable carrying the provider's own reason.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

import pybreaker
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from crypto_predictor.errors import MarketDataUnavailable

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)
CHUNK = 64 * 1024
# The monotonic time the current call must be done by (per thread of execution).
_DEADLINE: contextvars.ContextVar = contextvars.ContextVar("provider_deadline", default=None)


class _RetryAfterTooLong(Exception):
    def __init__(self, seconds: float):
        self.seconds = seconds


class _DeadlinePassed(Exception):
    pass


class CappedRetry(Retry):
    """Retry that will not wait past the call's deadline, nor longer than ``max_retry_after``."""

    max_retry_after = 30.0

    def new(self, **kw):
        new = super().new(**kw)
        new.max_retry_after = self.max_retry_after
        return new

    def sleep(self, response=None) -> None:
        wait = self.get_retry_after(response) if response is not None and self.respect_retry_after_header else None
        if wait is not None and wait > self.max_retry_after:
            raise _RetryAfterTooLong(wait)
        if wait is None:
            wait = self.get_backoff_time()
        deadline = _DEADLINE.get()
        if deadline is not None and time.monotonic() + wait >= deadline:
            raise _DeadlinePassed()
        if wait > 0:
            time.sleep(wait)


def build_session(config) -> requests.Session:
    retry = CappedRetry(
        total=config.HTTP_RETRIES,
        connect=config.HTTP_RETRIES,
        read=config.HTTP_RETRIES,
        status=config.HTTP_RETRIES,
        backoff_factor=config.HTTP_BACKOFF,
        backoff_jitter=config.HTTP_BACKOFF,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        # Hand back the last response so its body (the provider's reason) is kept.
        raise_on_status=False,
    )
    retry.max_retry_after = config.HTTP_MAX_RETRY_AFTER
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=8)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "crypto-predictor/0.1 (+market data ingest)"
    session.headers["Accept"] = "application/json"
    return session


def _answered(exc: BaseException) -> bool:
    """The provider answered and said no (bad symbol, bad range): not a sign that it is down."""
    status = getattr(exc, "details", {}).get("status") if isinstance(exc, MarketDataUnavailable) else None
    return status is not None and 400 <= status < 500 and status not in (408, 418, 429)


class ProviderClient:
    """GET JSON from one provider: its session, timeouts, deadline and circuit breaker."""

    def __init__(self, name: str, config, session=None):
        self.name = name
        self.session = session or build_session(config)
        self.timeout = (config.HTTP_CONNECT_TIMEOUT, config.HTTP_READ_TIMEOUT)
        self.deadline = float(config.HTTP_DEADLINE)
        self.max_retry_after = float(config.HTTP_MAX_RETRY_AFTER)
        self.breaker = pybreaker.CircuitBreaker(fail_max=int(config.HTTP_BREAKER_FAILURES),
                                                reset_timeout=float(config.HTTP_BREAKER_RESET_SECONDS),
                                                exclude=[_answered], name=name,
                                                throw_new_error_on_trip=False)

    def get_json(self, url: str, *, params=None, headers=None, on_status=None):
        """Decoded JSON, or MarketDataUnavailable; ``on_status(response)`` may raise a client's own
        error for statuses it treats specially (Binance's 418) before the generic handling."""
        try:
            return self.breaker.call(self._get_json, url, params, headers, on_status)
        except pybreaker.CircuitBreakerError:
            raise MarketDataUnavailable(
                f"{self.name}: {self.breaker.fail_max} calls in a row failed; not asking again for "
                f"{self.breaker.reset_timeout:g} s", provider=self.name, reason="circuit open",
                retry_after=self.breaker.reset_timeout) from None

    def _get_json(self, url, params, headers, on_status):
        token = _DEADLINE.set(time.monotonic() + self.deadline)
        try:
            response = self._send(url, params, headers)
            try:
                if on_status is not None:
                    on_status(response)
                body = self._body(response, url)
            finally:
                response.close()
        finally:
            _DEADLINE.reset(token)
        if response.status_code >= 400:
            reason = _reason(body)
            raise MarketDataUnavailable(f"{self.name}: HTTP {response.status_code}: {reason}", provider=self.name,
                                        reason=reason, status=response.status_code)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise MarketDataUnavailable(f"{self.name}: malformed JSON in response from {url}: {body[:80]!r}",
                                        provider=self.name, reason="malformed JSON") from exc

    def _late(self) -> MarketDataUnavailable:
        return MarketDataUnavailable(f"{self.name}: no complete answer within {self.deadline:g} s (deadline)",
                                     provider=self.name, reason="timeout")

    def _send(self, url, params, headers) -> requests.Response:
        name = self.name
        try:
            return self.session.get(url, params=params, headers=headers, timeout=self.timeout, stream=True)
        except _RetryAfterTooLong as exc:
            raise MarketDataUnavailable(
                f"{name}: asked us to wait {exc.seconds:g} s (Retry-After), more than the "
                f"{self.max_retry_after:g} s we wait: unavailable now",
                provider=name, reason="rate limited", status=429, retry_after=exc.seconds) from None
        except _DeadlinePassed:
            raise self._late() from None
        except requests.exceptions.RetryError as exc:
            raise MarketDataUnavailable(f"{name}: gave up after retries: {exc}", provider=name,
                                        reason=str(exc)) from exc
        except requests.exceptions.RequestException as exc:
            if isinstance(exc, requests.exceptions.ConnectionError):
                # Read timeouts that exhausted the retries surface as ConnectionError(MaxRetryError(ReadTimeoutError)).
                timed_out = isinstance(getattr(exc.args[0], "reason", None) if exc.args else None, ReadTimeoutError)
            else:
                timed_out = isinstance(exc, requests.exceptions.Timeout)
            if timed_out:
                raise MarketDataUnavailable(f"{name}: no answer within {self.timeout[1]:g} s (after retries)",
                                            provider=name, reason="timeout") from exc
            raise MarketDataUnavailable(f"{name}: could not connect to {url}: {exc.__class__.__name__}",
                                        provider=name, reason=str(exc)) from exc

    def _body(self, response: requests.Response, url: str) -> bytes:
        """The whole body, read as it arrives, or MarketDataUnavailable once the deadline passes."""
        deadline = _DEADLINE.get()
        parts = []
        while True:
            if time.monotonic() > deadline:
                raise self._late()
            try:
                chunk = response.raw.read1(CHUNK, decode_content=True)
            except Exception as exc:  # timeouts, resets, urllib3's ProtocolError on a truncated body
                raise MarketDataUnavailable(f"{self.name}: the answer from {url} broke off: "
                                            f"{exc.__class__.__name__}", provider=self.name,
                                            reason="unreadable body") from exc
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)


def _reason(body: bytes) -> str:
    """The provider's own explanation, as short text."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:300]
    if isinstance(decoded, dict):
        for key in ("msg", "error", "message", "status"):
            if key in decoded:
                value = decoded[key]
                return json.dumps(value) if isinstance(value, dict) else str(value)
    return json.dumps(decoded)[:300]
