"""Small slices of the shared candles written as a csv directory in the shared format (in tmp, never the repo)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from crypto_predictor.market.csvdir import CsvSource
from crypto_predictor.symbols import resolve

# The tests read the shared candles up to this hour only, so their figures stay put when the shared
# data grows (v2 reaches 2023-12-31). BTC and ETH before it come from the same export in v1 and v2.
DATA_END = pd.Timestamp("2021-09-30T23:00:00Z")


def write_slice(data_dir, dest: Path, since: str, assets=("bitcoin", "ethereum"), until=DATA_END) -> Path:
    """Write ``<PAIR>-1h.csv.gz`` for each asset with candles opening in [since, until]; returns dest."""
    dest.mkdir(parents=True, exist_ok=True)
    source = CsvSource(data_dir)
    for asset in assets:
        write_frame(dest / f"{resolve(asset).pair}-1h.csv.gz", source.fetch(asset, start=since, end=until).candles)
    return dest


def write_frame(path: Path, frame: pd.DataFrame) -> None:
    """One candle frame (UTC open_time column) as a shared-format csv."""
    out = frame.copy()
    out["open_time"] = out["open_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(path, index=False)


def fill_store(store_or_url, data_dir, assets=("bitcoin", "ethereum"), start=None, end=DATA_END, last_days=None):
    """A store (schema created) holding the shared hourly candles of ``assets`` in [start, end]
    (``last_days``: the newest N days up to ``end``)."""
    from crypto_predictor.market.ingest import ingest_asset
    from crypto_predictor.market.store import CandleStore

    store = CandleStore(store_or_url) if isinstance(store_or_url, str) else store_or_url
    store.init_schema()
    source = CsvSource(data_dir)
    for asset in assets:
        ingest_asset(source, store, asset, "1h", start=start, end=end, last_days=last_days)
    return store
