"""Configuration read from the environment, with defaults that work on a fresh machine."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MARKET_SOURCES = ("binance", "coingecko", "csv")
SENTIMENT_SOURCE = "fear-greed"  # ingest's --source for the Fear & Greed Index (daily, not candles)


def _env(environ, name, default):
    value = environ.get(name)
    return default if value is None or value == "" else value


def _float(environ, name, default):
    try:
        return float(_env(environ, name, default))
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {environ.get(name)!r}") from exc


def _int(environ, name, default):
    try:
        return int(_env(environ, name, default))
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {environ.get(name)!r}") from exc


def _list(environ, name, default: str) -> list[str]:
    """A comma-separated setting as its non-empty, stripped items."""
    return [item.strip() for item in str(_env(environ, name, default)).split(",") if item.strip()]


def _bool(environ, name, default: bool) -> bool:
    return str(_env(environ, name, "1" if default else "0")).strip().lower() not in ("0", "false", "no", "off")


class Config:
    """Settings for the app, the CLIs and the jobs.

    Values are read when an instance is made (not at import), so a process can
    change its environment first; upper-case names let Flask load it with
    ``app.config.from_object``.
    """

    TESTING = False

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        self.DATABASE_URL = _env(
            env, "DATABASE_URL", f"sqlite:///{PROJECT_ROOT / 'instance' / 'crypto_predictor.db'}"
        )
        self.MODELS_DIR = _env(env, "MODELS_DIR", str(PROJECT_ROOT / "improved_models"))
        # A database every instance and job shares (registry.sql_store); MODELS_DIR is then each
        # process's verified local copy. Empty: MODELS_DIR alone is the store.
        self.MODEL_STORE_URL = _env(env, "MODEL_STORE_URL", "")
        self.DATABASE_STATEMENT_TIMEOUT_SECONDS = _float(env, "DATABASE_STATEMENT_TIMEOUT_SECONDS", 30)
        self.MARKET_DATA_SOURCE = _env(env, "MARKET_DATA_SOURCE", "binance").lower()
        if self.MARKET_DATA_SOURCE not in MARKET_SOURCES:
            raise ValueError(
                f"MARKET_DATA_SOURCE must be one of {', '.join(MARKET_SOURCES)}, "
                f"got {self.MARKET_DATA_SOURCE!r}"
            )
        self.MARKET_DATA_DIR = _env(env, "MARKET_DATA_DIR", "")
        self.COINGECKO_API_KEY = _env(env, "COINGECKO_API_KEY", "")
        # "demo" keys use the public host and header; "pro" keys use the pro host.
        self.COINGECKO_API_PLAN = _env(env, "COINGECKO_API_PLAN", "demo").lower()
        self.BINANCE_BASE_URL = _env(env, "BINANCE_BASE_URL", "https://api.binance.com")
        default_cg = (
            "https://pro-api.coingecko.com/api/v3"
            if self.COINGECKO_API_PLAN == "pro"
            else "https://api.coingecko.com/api/v3"
        )
        self.COINGECKO_BASE_URL = _env(env, "COINGECKO_BASE_URL", default_cg)
        # The Fear & Greed Index (market/fear_greed.py); the refresh job keeps it current unless FEAR_GREED_REFRESH=0.
        self.FEAR_GREED_BASE_URL = _env(env, "FEAR_GREED_BASE_URL", "https://api.alternative.me")
        self.FEAR_GREED_REFRESH = _bool(env, "FEAR_GREED_REFRESH", True)
        self._http(env)
        self.MAX_DATA_AGE_HOURS = _float(env, "MAX_DATA_AGE_HOURS", 6)
        # With a live source each worker's background refresh looks for new closed candles this often
        # (seconds; 0: off, the refresh cron job alone keeps the store current). Requests never fetch.
        self.LIVE_REFRESH_SECONDS = _float(env, "LIVE_REFRESH_SECONDS", 60)
        # Serving: how often a worker checks the alias file for a deploy (seconds).
        self.MODEL_POLL_SECONDS = _float(env, "MODEL_POLL_SECONDS", 2)
        # Serving caches (crypto_predictor/serving_data.py): a worker re-reads the newest candle times
        # at most every LATEST_TIME_TTL_SECONDS (a candle ingested elsewhere is seen that late at most)
        # and rebuilds its feature rows every FEATURE_CACHE_SECONDS (picks up corrected older candles).
        self.LATEST_TIME_TTL_SECONDS = _float(env, "LATEST_TIME_TTL_SECONDS", 1)
        self.FEATURE_CACHE_SECONDS = _float(env, "FEATURE_CACHE_SECONDS", 300)
        # Share of clients (sticky by client id) served by the challenger when one is set.
        self.AB_CHALLENGER_SHARE = _float(env, "AB_CHALLENGER_SHARE", 0)
        if not 0 <= self.AB_CHALLENGER_SHARE <= 1:
            raise ValueError(f"AB_CHALLENGER_SHARE must lie in [0, 1], got {self.AB_CHALLENGER_SHARE}")
        # Log every served prediction for live accuracy (off: "0", "false", "no", "off").
        self.PREDICTION_LOG = _bool(env, "PREDICTION_LOG", True)
        self._cache(env)
        # Rate limit per client address and route (api/rate_limit.py, on `limits`); on by default, off under TestConfig.
        # memory:// counts per worker process; use redis://... to share the count.
        self.RATELIMIT_ENABLED = _bool(env, "RATELIMIT_ENABLED", not self.TESTING)
        self.RATELIMIT_DEFAULT = _env(env, "RATELIMIT_DEFAULT", "600 per minute")
        self.RATELIMIT_STORAGE_URI = _env(env, "RATELIMIT_STORAGE_URI", "memory://")
        self.LOG_LEVEL = str(_env(env, "LOG_LEVEL", "INFO")).upper()
        # Security: admin endpoints answer only with "Authorization: Bearer <ADMIN_TOKEN>";
        # with no token set they are disabled. CORS is off unless origins are listed (comma-separated).
        self.ADMIN_TOKEN = _env(env, "ADMIN_TOKEN", "")
        self.CORS_ORIGINS = [o.strip() for o in _env(env, "CORS_ORIGINS", "").split(",") if o.strip()]
        # /metrics answers only with "Authorization: Bearer <METRICS_TOKEN>" when one is set (open otherwise).
        self.METRICS_TOKEN = _env(env, "METRICS_TOKEN", "")
        # /dashboard (api/dashboard.py): with DASHBOARD_TOKEN set it asks for it (Bearer, or the login form's
        # signed cookie); without one it is off, unless DASHBOARD_OPEN=true opens it (a local machine only).
        self.DASHBOARD_TOKEN = _env(env, "DASHBOARD_TOKEN", "")
        self.DASHBOARD_OPEN = _bool(env, "DASHBOARD_OPEN", False)
        self.DASHBOARD_SESSION_HOURS = _float(env, "DASHBOARD_SESSION_HOURS", 12)
        # Proxies in front of the app that append to X-Forwarded-For (Render: 2, Cloudflare then its proxy).
        # 0 ignores the header so a client cannot spoof its address; the right count lets rate limits and A/B
        # see the real client (check with GET /api/v1/admin/request-info).
        self.PROXY_FIX_X_FOR = _int(env, "PROXY_FIX_X_FOR", 0)
        if self.PROXY_FIX_X_FOR < 0:
            raise ValueError(f"PROXY_FIX_X_FOR must be 0 or more, got {self.PROXY_FIX_X_FOR}")
        self._jobs(env)

    def _jobs(self, env) -> None:
        # Jobs (refresh / verify / retrain). Assets to refresh: comma-separated ids, default all known.
        self.REFRESH_ASSETS = _list(env, "REFRESH_ASSETS", "")
        # A job lock older than this is taken to belong to a crashed run and may be taken over.
        self.JOB_LOCK_TTL_SECONDS = _float(env, "JOB_LOCK_TTL_SECONDS", 6 * 3600)
        # bootstrap (jobs/bootstrap.py): what a first deploy ingests and trains when the store is empty
        self.BOOTSTRAP_DAYS = _int(env, "BOOTSTRAP_DAYS", 120)
        self.BOOTSTRAP_TIMEFRAMES = _list(env, "BOOTSTRAP_TIMEFRAMES", "1h,24h")
        self.BOOTSTRAP_MODELS = _list(env, "BOOTSTRAP_MODELS", "linear,xgboost")
        # retrain triggers when, over the last RETRAIN_WINDOW_DAYS with at least RETRAIN_MIN_SAMPLES
        # verified predictions, direction accuracy or 80% interval coverage falls below these.
        self.RETRAIN_WINDOW_DAYS = _float(env, "RETRAIN_WINDOW_DAYS", 14)
        self.RETRAIN_MIN_SAMPLES = _int(env, "RETRAIN_MIN_SAMPLES", 30)
        self.RETRAIN_MIN_DIRECTION_ACCURACY = _float(env, "RETRAIN_MIN_DIRECTION_ACCURACY", 0.48)
        self.RETRAIN_MIN_COVERAGE80 = _float(env, "RETRAIN_MIN_COVERAGE80", 0.70)

    def _cache(self, env) -> None:
        """The API response cache (``api.runtime``)."""
        # API response cache (Flask-Caching names): SimpleCache per process, RedisCache when
        # CACHE_REDIS_URL is set (shared by workers and instances); CACHE_ENABLED=0 turns it off.
        self.CACHE_ENABLED = _bool(env, "CACHE_ENABLED", True)
        self.CACHE_REDIS_URL = _env(env, "CACHE_REDIS_URL", "")
        self.CACHE_TYPE = "RedisCache" if self.CACHE_REDIS_URL else "SimpleCache"
        self.CACHE_DEFAULT_TIMEOUT = _int(env, "CACHE_DEFAULT_TIMEOUT", 3600)
        self.CACHE_KEY_PREFIX = _env(env, "CACHE_KEY_PREFIX", "crypto_predictor:")
        self.CACHE_MAX_BYTES = _int(env, "CACHE_MAX_BYTES", 32 * 1024 * 1024)  # in-process cache, per worker (api/memory_cache.py)
        # A Redis that does not answer within this is skipped (a frozen one must not stall requests);
        # after CACHE_BREAKER_FAILURES failures in a row it is left alone for CACHE_BREAKER_RESET_SECONDS.
        self.CACHE_SOCKET_TIMEOUT = _float(env, "CACHE_SOCKET_TIMEOUT", 0.15)
        self.CACHE_BREAKER_FAILURES = _int(env, "CACHE_BREAKER_FAILURES", 3)
        self.CACHE_BREAKER_RESET_SECONDS = _float(env, "CACHE_BREAKER_RESET_SECONDS", 15.0)
        # Each worker keeps prediction hits for this long in front of the cache (api/near_cache.py); 0: off.
        self.NEAR_CACHE_SECONDS = _float(env, "NEAR_CACHE_SECONDS", 5.0)
        self.NEAR_CACHE_ENTRIES = _int(env, "NEAR_CACHE_ENTRIES", 4096)

    def _http(self, env) -> None:
        """Provider calls (``market.http``)."""
        self.HTTP_CONNECT_TIMEOUT = _float(env, "HTTP_CONNECT_TIMEOUT", 3.05)
        self.HTTP_READ_TIMEOUT = _float(env, "HTTP_READ_TIMEOUT", 10.0)
        self.HTTP_RETRIES = _int(env, "HTTP_RETRIES", 4)
        self.HTTP_BACKOFF = _float(env, "HTTP_BACKOFF", 0.5)
        # A provider asking us to wait longer than this is treated as unavailable.
        self.HTTP_MAX_RETRY_AFTER = _float(env, "HTTP_MAX_RETRY_AFTER", 30.0)
        # One provider call, retries and a dripping body included, ends by then (seconds).
        self.HTTP_DEADLINE = _float(env, "HTTP_DEADLINE", 20.0)
        # After this many failed calls in a row a provider is left alone for the reset time.
        self.HTTP_BREAKER_FAILURES = _int(env, "HTTP_BREAKER_FAILURES", 5)
        self.HTTP_BREAKER_RESET_SECONDS = _float(env, "HTTP_BREAKER_RESET_SECONDS", 60.0)

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if k.isupper()}


class TestConfig(Config):
    """Fast, local settings for tests: short timeouts, tiny backoff, no live source."""

    TESTING = True
    __test__ = False  # not a pytest test class despite the name

    def __init__(self, environ=None, **overrides):
        super().__init__({} if environ is None else environ)
        self.DATABASE_URL = "sqlite://"
        self.MARKET_DATA_SOURCE = "csv"
        self.HTTP_CONNECT_TIMEOUT = 1.0
        self.HTTP_READ_TIMEOUT = 1.0
        self.HTTP_RETRIES = 2
        self.HTTP_BACKOFF = 0.01
        self.HTTP_MAX_RETRY_AFTER = 2.0
        self.HTTP_DEADLINE = 3.0
        self.LIVE_REFRESH_SECONDS = 0  # tests run a refresh round themselves (LiveRefresher.run_once)
        for key, value in overrides.items():
            setattr(self, key, value)
