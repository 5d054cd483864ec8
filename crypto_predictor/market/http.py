"""The one HTTP session every market-data client uses.

urllib3's Retry does the backoff (exponential, with jitter) and honours
Retry-After; we only cap how long a provider may make us wait so a request
can never hang, and turn every failure into MarketDataUnavailable.
"""

from __future__ import annotations

import json
import logging

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from crypto_predictor.errors import MarketDataUnavailable

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)


class CappedRetry(Retry):
    """Retry whose Retry-After wait is bounded by ``max_retry_after`` seconds."""

    max_retry_after = 30.0

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), self.max_retry_after)

    def new(self, **kw):
        new = super().new(**kw)
        new.max_retry_after = self.max_retry_after
        return new


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


def _reason(response: requests.Response) -> str:
    """The provider's own explanation, as short text."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:300]
    if isinstance(body, dict):
        for key in ("msg", "error", "message", "status"):
            if key in body:
                value = body[key]
                return json.dumps(value) if isinstance(value, dict) else str(value)
    return json.dumps(body)[:300]


def get_json(session, provider: str, url: str, *, params=None, headers=None, timeout=(3.05, 10.0),
             on_status=None):
    """GET ``url`` and return decoded JSON, or raise MarketDataUnavailable.

    ``on_status(response)`` lets a client raise its own error for statuses it
    treats specially (Binance's 418) before the generic handling.
    """
    try:
        response = session.get(url, params=params, headers=headers, timeout=timeout)
    except requests.exceptions.RetryError as exc:
        raise MarketDataUnavailable(
            f"{provider}: gave up after retries: {exc}", provider=provider, reason=str(exc)
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        # Read timeouts that exhausted the retries surface as ConnectionError(MaxRetryError(ReadTimeoutError)).
        inner = getattr(exc.args[0], "reason", None) if exc.args else None
        if not isinstance(inner, ReadTimeoutError):
            raise MarketDataUnavailable(
                f"{provider}: could not connect to {url}: {exc.__class__.__name__}",
                provider=provider, reason=str(exc),
            ) from exc
        raise MarketDataUnavailable(
            f"{provider}: no answer within {timeout[1]}s (after retries)",
            provider=provider, reason="timeout",
        ) from exc
    except requests.exceptions.Timeout as exc:
        raise MarketDataUnavailable(
            f"{provider}: no answer within {timeout[1]}s (after retries)",
            provider=provider, reason="timeout",
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise MarketDataUnavailable(
            f"{provider}: could not connect to {url}: {exc.__class__.__name__}",
            provider=provider, reason=str(exc),
        ) from exc
    if on_status is not None:
        on_status(response)
    if response.status_code >= 400:
        reason = _reason(response)
        raise MarketDataUnavailable(
            f"{provider}: HTTP {response.status_code}: {reason}",
            provider=provider, reason=reason, status=response.status_code,
        )
    try:
        return response.json()
    except ValueError as exc:
        snippet = (response.text or "")[:80]
        raise MarketDataUnavailable(
            f"{provider}: malformed JSON in response from {url}: {snippet!r}",
            provider=provider, reason="malformed JSON",
        ) from exc
