"""The Crypto Fear & Greed Index (alternative.me): the live API and the shared CSV, as one daily frame.

``GET {FEAR_GREED_BASE_URL}/fng/?limit=N&format=json`` answers ``{"data": [{"value": "30",
"value_classification": "Fear", "timestamp": "1517443200", ...}], "metadata": {"error": null}}``,
newest first, one value per UTC day (``limit=0``: the whole history). Calls go through the one
provider session (``market.http``). The value of the day still in progress is not kept: like a
forming candle it may change, and the features take a day's value as published at 00:00 UTC of
the next day (``sentiment_features``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from crypto_predictor.errors import DataNotFound, InvalidInput, MarketDataUnavailable
from crypto_predictor.market.http import ProviderClient

NAME = "fear-greed"
INDEX = "fear_greed"  # the series' name in the store
FILE_NAME = "fear_greed.csv"
COLUMNS = ["day", "value", "classification"]


@dataclass
class SentimentResult:
    frame: pd.DataFrame  # COLUMNS: UTC midnight day, value as received (float), classification
    source: str
    notes: list = field(default_factory=list)


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({"day": pd.Series(dtype="datetime64[ns, UTC]"), "value": pd.Series(dtype="float64"),
                         "classification": pd.Series(dtype="object")})


def _frame(days, values, classes) -> pd.DataFrame:
    return pd.DataFrame({"day": pd.to_datetime(pd.Series(days, dtype="object"), utc=True).dt.as_unit("ns"),
                         "value": pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce").astype("float64"),
                         "classification": pd.Series(classes, dtype="object")})


def closed_days(frame: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Only days that have ended by ``now`` (today's value is still provisional)."""
    return frame[frame["day"] + pd.Timedelta(days=1) <= now].reset_index(drop=True)


class FearGreedSource:
    name = NAME

    def __init__(self, config, session=None, clock=time.time):
        self.base_url = config.FEAR_GREED_BASE_URL.rstrip("/")
        self.client = ProviderClient(self.name, config, session)
        self._clock = clock

    def fetch(self, limit: int = 0) -> SentimentResult:
        """The newest ``limit`` days (0: every day), oldest first, the day in progress left out."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidInput(f"limit must be a number of days >= 0, got {limit!r}")
        body = self.client.get_json(f"{self.base_url}/fng/", params={"limit": limit, "format": "json"})
        frame = parse_payload(body)
        now = pd.Timestamp(self._clock(), unit="s", tz="UTC")
        kept = closed_days(frame, now)
        notes = [] if len(kept) == len(frame) else [f"left out {len(frame) - len(kept)} value(s) of the day in progress"]
        return SentimentResult(kept.sort_values("day", kind="stable").reset_index(drop=True), self.name, notes)


def _unexpected(why: str) -> MarketDataUnavailable:
    return MarketDataUnavailable(f"{NAME}: unexpected payload ({why})", provider=NAME, reason="unexpected payload")


def parse_payload(body) -> pd.DataFrame:
    """The API's body as a frame; values are checked later (``validate_sentiment``), shape here."""
    if not isinstance(body, dict):
        raise _unexpected("not a JSON object")
    error = (body.get("metadata") or {}).get("error") if isinstance(body.get("metadata"), dict) else None
    if error:
        raise MarketDataUnavailable(f"{NAME}: the API reported an error: {error}", provider=NAME, reason=str(error))
    data = body.get("data")
    if not isinstance(data, list):
        raise _unexpected("no 'data' list")
    days, values, classes = [], [], []
    for item in data:
        if not isinstance(item, dict) or "timestamp" not in item or "value" not in item:
            raise _unexpected("an entry without 'timestamp' and 'value'")
        try:
            days.append(pd.Timestamp(int(item["timestamp"]), unit="s", tz="UTC"))
        except (TypeError, ValueError, OverflowError):
            raise _unexpected(f"timestamp {item['timestamp']!r} is not unix seconds") from None
        values.append(item["value"])
        classes.append(item.get("value_classification"))
    return _frame(days, values, classes) if days else empty_frame()


def csv_path(path) -> Path:
    """The shared file: ``path`` itself, or ``fear_greed.csv`` in it or in its ``sentiment/``."""
    p = Path(path)
    for candidate in (p, p / FILE_NAME, p / "sentiment" / FILE_NAME, p.parent / "sentiment" / FILE_NAME):
        if candidate.is_file():
            return candidate
    raise DataNotFound(f"no {FILE_NAME} at {p} (nor in its sentiment/ folder)")


def read_csv(path) -> SentimentResult:
    """The shared CSV (date, timestamp, value, value_classification)."""
    file = csv_path(path)
    raw = pd.read_csv(file)
    missing = [c for c in ("timestamp", "value") if c not in raw.columns]
    if missing:
        raise InvalidInput(f"{file.name}: missing columns {', '.join(missing)}; need timestamp, value")
    try:
        days = pd.to_datetime(raw["timestamp"].astype("int64"), unit="s", utc=True)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{file.name}: timestamp must be unix seconds") from exc
    classes = raw["value_classification"] if "value_classification" in raw else [None] * len(raw)
    return SentimentResult(_frame(days, raw["value"], classes), "csv")
