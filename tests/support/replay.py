"""A prediction log made the way production makes one: candles arrive an hour at a time and the real
service predicts after each, with its clock at that candle's close; then the verify step fills in
what happened. Used by the dashboard tests and its screenshot script."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import delete

from crypto_predictor.config import TestConfig
from crypto_predictor.market.store import CandleStore
from crypto_predictor.serving.prediction_log import verify
from crypto_predictor.serving.service import PredictionService
from crypto_predictor.storage.tables import candles

HOUR = pd.Timedelta(hours=1)


def hold_back(database_url: str, hours: int, assets=("bitcoin", "ethereum")) -> dict:
    """Take the newest ``hours`` candles of ``assets`` out of the store (train on what is left); asset -> frame."""
    store = CandleStore(database_url)
    cut = max(store.latest_time(a) for a in assets) - (hours - 1) * HOUR
    held = {a: store.load(a, "1h", cut).reset_index() for a in assets}
    with store.engine.begin() as conn:
        conn.execute(delete(candles).where(candles.c.open_time >= cut.to_pydatetime(), candles.c.asset.in_(assets)))
    return held


def replay(database_url: str, models_dir, held: dict, timeframes=("1h", "24h"), **config) -> int:
    """Put ``hold_back``'s candles back one hour at a time, predicting every (asset, timeframe) after each;
    returns the number of predictions logged."""
    store = CandleStore(database_url)
    assets = list(held)
    cut = min(frame["open_time"].min() for frame in held.values())
    hours = int((max(frame["open_time"].max() for frame in held.values()) - cut) / HOUR) + 1
    now = [cut.timestamp()]
    service = PredictionService(TestConfig(DATABASE_URL=database_url, MODELS_DIR=str(models_dir),
                                           LATEST_TIME_TTL_SECONDS=0, **config), clock=lambda: now[0])
    made = 0
    for hour in range(hours):
        at = cut + hour * HOUR
        for asset, frame in held.items():
            row = frame[frame["open_time"] == at]
            store.upsert(asset, "1h", row.drop(columns=["source"], errors="ignore"), source="binance")
        now[0] = (at + HOUR).timestamp() + 30
        for asset in assets:
            for tf in timeframes:
                service.predict(asset, tf)
                made += 1
    service.log.flush(timeout=10)
    verify(store)
    return made
