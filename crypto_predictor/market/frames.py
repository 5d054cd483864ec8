"""The candle frame every source returns and validation/store accept."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

CANDLE_COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades"]
PRICE_COLUMNS = ["open", "high", "low", "close"]


def empty_candles() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in CANDLE_COLUMNS})
    frame["open_time"] = pd.Series(dtype="datetime64[ns, UTC]")
    return frame


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce a source's frame to CANDLE_COLUMNS with float prices and UTC open_time."""
    out = frame.copy()
    for col in ("quote_volume", "trades"):
        if col not in out:
            out[col] = float("nan")
    out = out[CANDLE_COLUMNS]
    # pandas 3 infers the unit (s/ms/us) from the input; pin ns so epoch arithmetic is uniform.
    out["open_time"] = pd.to_datetime(out["open_time"], utc=True).dt.as_unit("ns")
    for col in CANDLE_COLUMNS[1:]:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    return out.reset_index(drop=True)


@dataclass
class FetchResult:
    """Candles for one asset as a source delivered them."""

    asset: str
    interval: str  # the interval actually delivered (CoinGecko may differ from the request)
    candles: pd.DataFrame
    source: str
    notes: list[str] = field(default_factory=list)
