"""Directories of <PAIR>-<interval>.csv[.gz] files (the format of shared/data/ohlcv and universe).

``data_dir`` is one directory or several joined by ``os.pathsep``; a directory holding ``ohlcv/``
and ``universe/`` (the shared data root) is searched in both, so one path reaches all 174 assets.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from crypto_predictor.errors import DataNotFound, InvalidInput
from crypto_predictor.market.frames import FetchResult, normalise
from crypto_predictor.symbols import ASSETS, check_interval, resolve
from crypto_predictor.timeutil import to_utc

SUBDIRS = ("ohlcv", "universe")
REQUIRED = ["open_time", "open", "high", "low", "close", "volume"]


class CsvSource:
    name = "csv"

    def __init__(self, data_dir):
        self.data_dir = str(data_dir)
        self.dirs = []
        for part in filter(None, self.data_dir.split(os.pathsep)):
            root = Path(part)
            if not root.is_dir():
                raise DataNotFound(f"market data directory not found: {root}")
            self.dirs += [root] + [root / sub for sub in SUBDIRS if (root / sub).is_dir()]
        if not self.dirs:
            raise DataNotFound("no market data directory given")

    def path_for(self, pair: str, interval: str) -> Path | None:
        for root in self.dirs:
            for suffix in (".csv", ".csv.gz"):
                path = root / f"{pair}-{interval}{suffix}"
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
                f"no file {asset.pair}-{interval}.csv or .csv.gz in {', '.join(map(str, self.dirs))}",
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
