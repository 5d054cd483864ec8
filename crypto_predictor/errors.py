"""One small hierarchy of domain errors.

Only the API layer turns these into HTTP responses; each class carries the status
and machine-readable code it maps to so that mapping lives in one place.
"""


class CryptoPredictorError(Exception):
    """Base class of every error this package raises on purpose."""

    http_status = 500
    code = "internal_error"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(CryptoPredictorError):
    http_status = 400
    code = "invalid_input"


class UnknownSymbol(InvalidInput):
    http_status = 404
    code = "unknown_symbol"


class UnknownTimeframe(InvalidInput):
    code = "unknown_timeframe"


class MarketDataUnavailable(CryptoPredictorError):
    """A provider could not give us data; ``reason`` is the provider's own words."""

    http_status = 503
    code = "market_data_unavailable"

    def __init__(self, message: str, provider: str = "", reason: str = "", **details):
        super().__init__(message, provider=provider, reason=reason, **details)
        self.provider = provider
        self.reason = reason


class ProviderBanned(MarketDataUnavailable):
    """Binance answered 418: the IP is banned; retrying only extends the ban."""

    code = "provider_banned"


class DataUnavailable(CryptoPredictorError):
    """Our stored data cannot answer (a fault on our side, not the client's input)."""

    http_status = 503
    code = "data_unavailable"


class DataNotFound(CryptoPredictorError):
    http_status = 404
    code = "data_not_found"


class NotFittedError(CryptoPredictorError, ValueError):
    code = "not_fitted"


class UnknownModelKind(InvalidInput):
    code = "unknown_model_kind"


class ModelNotFound(CryptoPredictorError):
    http_status = 404
    code = "model_not_found"


class BundleIntegrityError(CryptoPredictorError):
    """A model bundle or the alias file is missing, altered or unreadable: the store's fault (a 500
    whose message, which may name files, stays in the log)."""

    code = "bundle_integrity"


class ModelStoreUnavailable(CryptoPredictorError):
    """The shared model store (MODEL_STORE_URL) cannot be reached or answered with an error."""

    http_status = 503
    code = "model_store_unavailable"


class DataTooOld(CryptoPredictorError):
    """The newest candles are older than MAX_DATA_AGE_HOURS and the live source could not refresh them."""

    http_status = 503
    code = "data_too_old"


class ServiceUnavailable(CryptoPredictorError):
    """No model is loaded (no production alias, or its bundle was refused)."""

    http_status = 503
    code = "model_unavailable"


class InsufficientData(InvalidInput):
    """Too little history to build features and evaluate a model for a pair."""

    code = "insufficient_data"
