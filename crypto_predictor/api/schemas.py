"""Request and response shapes, declared once as pydantic models: they validate requests and
they are the schemas of the OpenAPI document (api/openapi.py).

Rules (the same for every endpoint):
- a body that is not JSON, or JSON that is not an object -> 400 ``malformed_request``
  (api/operations.py parses the body with the standard library, whatever its Content-Type);
- a field of the wrong type, missing, too long or out of range -> 422 ``validation_error``;
- more than MAX_BATCH_SYMBOLS symbols -> 413 ``too_many_symbols``;
- a well-typed value naming nothing we know (timeframe, interval) -> 400 listing the valid ones;
  an unknown symbol or model version is reported by the service (404);
- fields we do not know are ignored, so older and newer app builds can share one API.
Responses are not validated at run time (the hot path stays lean); tests check real answers
against these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from crypto_predictor.api.explanation_schema import Explanation
from crypto_predictor.errors import CryptoPredictorError
from crypto_predictor.symbols import INTERVALS_MS, TIMEFRAMES, check_interval, check_timeframe, core_ids, supported_ids

MAX_BATCH_SYMBOLS = 50
MAX_NAME_LENGTH = 64  # longest symbol / version name we accept (the real ones are far shorter)
DEFAULT_TIMEFRAME = "24h"
ANALYSIS_DAYS = (1, 365)
DEFAULT_ANALYSIS_DAYS = 30
DEFAULT_INTERVAL = "1d"
HISTORY_LIMIT = (1, 500)
SENTIMENT_DAYS = (1, 3650)
MIN_CORRELATION_SYMBOLS, MAX_CORRELATION_SYMBOLS = 2, 20
DEFAULT_SENTIMENT_DAYS = 30
DEFAULT_HISTORY_LIMIT = 50


# ---------------------------------------------------------------- field types

def _not_empty(value: str) -> str:
    if not value:
        raise PydanticCustomError("empty", "must not be empty")
    return value


def _known(check, error_type: str):
    """A validator that lower-cases and checks a name against ``check`` (UnknownTimeframe -> an error type)."""
    def validate(value: str) -> str:
        try:
            return check(value.lower())
        except CryptoPredictorError as exc:  # kept whole: api/operations.py raises it as it is
            raise PydanticCustomError(error_type, "{reason}", {"reason": exc.message, "error": exc}) from None
    return validate


def _default(default):
    """Absent, null or blank means the default, as for every optional name."""
    def fill(value):
        return default if value is None or (isinstance(value, str) and not value.strip()) else value
    return BeforeValidator(fill)


def _query_int(default: int):
    """A query integer as ``int(raw.strip())`` reads it ("1.0", "1e3" and long strings are not integers);
    absent or blank means the default."""
    def parse(value):
        text = "" if value is None else str(value)
        if not text.strip():
            return default
        if len(text) <= 12:
            try:
                return int(text.strip())
            except ValueError:
                pass
        raise PydanticCustomError("int_parsing", "not an integer")
    return BeforeValidator(parse)


_Raw = Annotated[str, StringConstraints(max_length=MAX_NAME_LENGTH), AfterValidator(str.strip)]
Name = Annotated[_Raw, AfterValidator(_not_empty)]
OptionalName = Annotated[Optional[_Raw], AfterValidator(lambda v: v or None)]
Timeframe = Annotated[_Raw, _default(DEFAULT_TIMEFRAME), AfterValidator(_known(check_timeframe, "unknown_timeframe")),
                      Field(json_schema_extra={"enum": list(TIMEFRAMES)})]
Interval = Annotated[_Raw, _default(DEFAULT_INTERVAL), AfterValidator(_known(check_interval, "unknown_timeframe")),
                     Field(json_schema_extra={"enum": list(INTERVALS_MS)})]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# ---------------------------------------------------------------- requests

class PredictRequest(_Request):
    """Unknown fields are ignored."""

    symbol: Name = Field(description="CoinGecko id, ticker (BTC) or Binance pair (BTCUSDT)",
                         examples=["bitcoin"])
    timeframe: Timeframe = DEFAULT_TIMEFRAME
    model_version: OptionalName = Field(None, examples=["production"],
                                        description="Version id (v3) or alias (production, challenger); "
                                                    "default: the client's A/B assignment")
    explain: bool = Field(False, description="Add data.explanation: the top feature contributions")


class PredictQuery(_Request):
    """GET /predict's parameters: PredictRequest's fields."""

    symbol: Name = Field(description="CoinGecko id, ticker (BTC) or Binance pair (BTCUSDT)", examples=["bitcoin"])
    timeframe: Timeframe = DEFAULT_TIMEFRAME
    model_version: OptionalName = Field(None, description="Version id (v3) or alias (production, challenger)")
    explain: bool = Field(False, description="true: add data.explanation")


class BatchRequest(_Request):
    symbols: list[_Raw] = Field(min_length=1, max_length=MAX_BATCH_SYMBOLS,
                                description=f"At most {MAX_BATCH_SYMBOLS} (more: 413)")
    timeframe: Timeframe = DEFAULT_TIMEFRAME
    model_version: OptionalName = None
    explain: bool = Field(False, description="Add data.explanation to every successful entry")


class AnalysisQuery(_Request):
    days: Annotated[int, Field(ge=ANALYSIS_DAYS[0], le=ANALYSIS_DAYS[1]), _query_int(DEFAULT_ANALYSIS_DAYS)] = Field(
        DEFAULT_ANALYSIS_DAYS, description="Days of history, counted back from the newest candle")
    interval: Interval = Field(DEFAULT_INTERVAL, description="Bar length")


def _symbol_list(value: str) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    if not MIN_CORRELATION_SYMBOLS <= len(names) <= MAX_CORRELATION_SYMBOLS:
        raise PydanticCustomError("symbol_count", "must name {low} to {high} different symbols, comma-separated",
                                  {"low": MIN_CORRELATION_SYMBOLS, "high": MAX_CORRELATION_SYMBOLS})
    return names


class CorrelationQuery(_Request):
    symbols: Annotated[str, StringConstraints(max_length=MAX_CORRELATION_SYMBOLS * (MAX_NAME_LENGTH + 1)),
                       AfterValidator(_symbol_list)] = Field(examples=["bitcoin,ethereum,solana"],
                                                            description="Comma-separated symbols")
    days: Annotated[int, Field(ge=ANALYSIS_DAYS[0], le=ANALYSIS_DAYS[1]), _query_int(90)] = Field(
        90, description="Days of history, counted back from the newest candle all symbols have")
    interval: Interval = Field(DEFAULT_INTERVAL, description="Bar length of the returns")


class SentimentQuery(_Request):
    days: Annotated[int, Field(ge=SENTIMENT_DAYS[0], le=SENTIMENT_DAYS[1]), _query_int(DEFAULT_SENTIMENT_DAYS)] = Field(
        DEFAULT_SENTIMENT_DAYS, description="Days of the index, counted back from its newest stored day")


class HistoryQuery(_Request):
    limit: Annotated[int, Field(ge=HISTORY_LIMIT[0], le=HISTORY_LIMIT[1]), _query_int(DEFAULT_HISTORY_LIMIT)] = Field(
        DEFAULT_HISTORY_LIMIT, description="Most rows to return")


class SymbolPath(_Request):
    symbol: _Raw = Field(description=f"Asset: id, ticker or pair; core ids: {', '.join(core_ids())}, and "
                                     f"{len(supported_ids()) - len(core_ids())} more (GET /api/v1/symbols)",
                         examples=["bitcoin"])


class VersionPath(_Request):
    model_version: _Raw = Field(description="Version id or alias", examples=["production"])


# ---------------------------------------------------------------- responses

class ErrorBody(BaseModel):
    code: str = Field(examples=["unknown_symbol"])
    message: str
    details: Optional[dict[str, Any]] = Field(None, description="Machine-readable extras, e.g. supported, valid, "
                                                                "retry_after, available")


class Error(BaseModel):
    status: Literal["error"]
    error: ErrorBody


class Skill(BaseModel):
    """How the served forecast did walk-forward, on rows its models never saw, against "no change"."""

    mase: float = Field(ge=0, description="Mean absolute error of the served forecast's log return divided by "
                                          "that of the naive no-change forecast; below 1 beats no-change")
    beats_naive: bool = Field(description="mase < 1. When false the served forecast is (close to) the current "
                                          "price: the skill gate shrank the models to no-change")
    direction_accuracy: Optional[float] = Field(None, ge=0, le=1, description="Share of out-of-sample rows whose "
                                                "direction the served forecast called right (a no-change call "
                                                "counts one half)")
    n: int = Field(ge=0, description="Out-of-sample rows these figures rest on")
    coverage_80: Optional[float] = Field(None, ge=0, le=1, description="Share of out-of-sample outcomes inside the "
                                         "served 80% interval (null: no interval was made)")
    coverage_95: Optional[float] = Field(None, ge=0, le=1, description="The same for the 95% interval")
    interval_score_ratio_80: Optional[float] = Field(None, ge=0, description="Interval score of the served 80% "
                                                     "interval (width + 2/alpha x miss distance) over that of "
                                                     "baseline_quantile (the trailing 30 days' quantiles of "
                                                     "returns around no-change) on the same walk-forward; below "
                                                     "1: sharper than that simple baseline")
    interval_score_ratio_95: Optional[float] = Field(None, ge=0, description="The same for the 95% interval")


class PredictionData(BaseModel):
    symbol: str
    current_price: float
    predicted_price: float
    confidence: float = Field(ge=0, le=1, description="Calibrated probability that the predicted direction is right; "
                                                      "0.5 when its walk-forward Brier score did not beat a coin "
                                                      "flip's 0.25")
    change_percentage: float
    timeframe: Literal["1h", "24h", "7d", "30d"]
    prediction_time: str = Field(json_schema_extra={"format": "date-time"})
    model_version: str = Field(description="The version that served this prediction")
    target_time: str = Field(json_schema_extra={"format": "date-time"})
    direction: Literal["up", "down", "flat"]
    interval: dict[str, Optional[list[float]]] = Field(description="Conformal price intervals: level -> [low, high]")
    data_as_of: Optional[str] = Field(None, description="Close time of the newest candle used")
    stale: Optional[bool] = Field(None, description="True when the live source could not be reached and stored "
                                                    "candles older than one bar were used")
    model_accuracy: Optional[float] = Field(None, ge=0, le=1, description="Walk-forward directional accuracy of "
                                                                          "the ensemble (or base model) for this "
                                                                          "pair, before the skill gate; kept for "
                                                                          "compatibility: see skill")
    skill: Optional[Skill] = Field(None, description="Walk-forward skill of exactly what is served; null for "
                                                     "bundles trained before the skill gate lacked figures")
    volatility: Optional[float] = Field(None, ge=0, description="Forecast standard deviation of the log return from "
                                        "now to target_time (a HAR forecast of realised variance; an EWMA, or nothing at 30d, "
                                        "in bundles trained before 2026-12-04), the scale of the intervals; null where the "
                                        "intervals are not volatility-scaled")
    explanation: Optional[Explanation] = Field(None, description="Only when the request asked for explain")


class PredictionMetadata(BaseModel):
    processing_time: float = Field(description="Seconds")
    cache_hit: bool
    model_accuracy: Optional[float] = None


class Prediction(BaseModel):
    status: Literal["success"]
    data: PredictionData
    metadata: PredictionMetadata


class BatchEntry(BaseModel):
    symbol: str
    status: Literal["success", "error"]
    cache_hit: Optional[bool] = None
    data: Optional[PredictionData] = None
    error: Optional[ErrorBody] = None
    explanation_error: Optional[ErrorBody] = Field(None, description="Why data.explanation is null (explain only)")


class BatchMetadata(BaseModel):
    processing_time: float
    count: int
    succeeded: int
    failed: int
    cache_hits: int
    model_version: str


class Batch(BaseModel):
    status: Literal["success"]
    data: list[BatchEntry]
    metadata: BatchMetadata


class Bar(BaseModel):
    time: str
    open: float
    high: float
    low: float
    close: float
    volume: float


class Summary(BaseModel):
    bars: int
    start_price: Optional[float]
    end_price: Optional[float]
    return_pct: Optional[float]
    volatility_annualized_pct: Optional[float]
    max_drawdown_pct: Optional[float]
    high: Optional[float]
    low: Optional[float]
    volume_trend: Optional[dict[str, Any]]


class Vote(BaseModel):
    indicator: str
    value: Optional[float]
    vote: Literal[-1, 0, 1]
    reason: str


class Signal(BaseModel):
    signal: Literal["BUY", "SELL", "HOLD"]
    score: int
    threshold: int
    votes: list[Vote]


class Window(BaseModel):
    start: str
    end: str


class SentimentDay(BaseModel):
    date: str = Field(json_schema_extra={"format": "date"}, examples=["2023-12-31"])
    value: float = Field(ge=0, le=100, examples=[67])
    classification: Optional[str] = Field(examples=["Greed"])


class SentimentCurrent(SentimentDay):
    published_at: str = Field(json_schema_extra={"format": "date-time"},
                              description="When the day's value counts as published (00:00 UTC of the next day)")


class SentimentData(BaseModel):
    index: Literal["fear_greed"]
    name: str
    source: str
    scale: str
    days: int
    current: SentimentCurrent
    series: list[SentimentDay] = Field(description="Oldest first; days the index has no value for are absent")
    missing_days: int = Field(description="Days without a value inside the series' span")


class SentimentMetadata(BaseModel):
    processing_time: float


class Sentiment(BaseModel):
    status: Literal["success"]
    data: SentimentData
    metadata: SentimentMetadata


class AnalysisData(BaseModel):
    symbol: str
    interval: Literal["1h", "4h", "1d"]
    days: int
    data_as_of: str = Field(json_schema_extra={"format": "date-time"})
    window: Optional[Window]
    ohlcv: list[Bar]
    indicators: dict[str, list[Optional[float]]] = Field(
        description="Series aligned with ohlcv (null where undefined): sma_20, sma_50, ema_12, ema_26, rsi_14, macd, "
                    "macd_signal, macd_hist, bb_upper, bb_middle, bb_lower")
    summary: Summary
    signal: Signal
    sentiment: Optional[SentimentData] = Field(
        description="The Fear & Greed Index as known at data_as_of, over the same days; null when none is stored")


class AnalysisMetadata(BaseModel):
    processing_time: float
    cache_hit: bool


class Analysis(BaseModel):
    status: Literal["success"]
    data: AnalysisData
    metadata: AnalysisMetadata


class Generic(BaseModel):
    """See the endpoint description."""

    status: Literal["success"]
    data: Any
    metadata: Optional[dict[str, Any]] = None


class Liveness(BaseModel):
    status: Literal["ok"]
    pid: int
    uptime_seconds: float


class Health(BaseModel):
    status: Literal["ok", "error"]
    ok: bool
    model_version: Optional[str]
    checks: dict[str, Any]
    error: Optional[ErrorBody] = None
