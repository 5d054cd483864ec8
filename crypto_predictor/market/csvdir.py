"""A directory of <PAIR>-<interval>.csv[.gz] files (the format of shared/data/ohlcv)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from crypto_predictor.errors import DataNotFound, InvalidInput
from crypto_predictor.market.frames import FetchResult, normalise
from crypto_predictor.symbols import ASSETS, check_interval, resolve
from crypto_predictor.timeutil import to_utc

REQUIRED = ["open_time", "open", "high", "low", "close", "volume"]


class CsvSource:
    name = "csv"

    def __init__(self, data_dir):
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise DataNotFound(f"market data directory not found: {self.data_dir}")

    def path_for(self, pair: str, interval: str) -> Path | None:
        for suffix in (".csv", ".csv.gz"):
            path = self.data_dir / f"{pair}-{interval}{suffix}"
            if path.is_file():
                return path
        return None

    def available(self, interval="1h") -> list[str]:
        """Asset ids that have a file for ``interval`` in the directory."""
        return [a.id for a in ASSETS if self.path_for(a.pair, interval) is not None]

    def fetch(self, symbol, interval="1h", start=None, end=None, progress=None) -> FetchResult:
        asset = resolve(symbol)
        check_interval(interval)
        path = self.path_for(asset.pair, interval)
        if path is None:
            raise DataNotFound(
                f"no file {asset.pair}-{interval}.csv or .csv.gz in {self.data_dir}",
                asset=asset.id,
            )
        raw = pd.read_csv(path)
        missing = [c for c in REQUIRED if c not in raw.columns]
        if missing:
            raise InvalidInput(f"{path.name}: missing columns {', '.join(missing)}; need {', '.join(REQUIRED)}")
        frame = normalise(raw)
        if start is not None:
            frame = frame[frame["open_time"] >= to_utc(start)]
        if end is not None:
            frame = frame[frame["open_time"] <= to_utc(end)]
        if progress is not None:
            progress(len(frame))
        return FetchResult(asset.id, interval, frame.reset_index(drop=True), self.name)
