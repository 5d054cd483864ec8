"""Crafted prediction-log rows for the job tests, and the realised prices they should get."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import insert

from crypto_predictor.serving.prediction_log import ensure_table
from crypto_predictor.storage.tables import prediction_log
from crypto_predictor.timeutil import utc

HOUR = pd.Timedelta(hours=1)
HORIZON = {"1h": pd.Timedelta(hours=1), "24h": pd.Timedelta(hours=24)}


def realised_close(candles: pd.DataFrame, target) -> float:
    """The close of the candle ending at ``target`` (the last earlier one across an outage)."""
    closes = candles.set_index("open_time")["close"] if "open_time" in candles else candles["close"]
    return float(closes.asof(pd.Timestamp(target) - HOUR))


def make_row(candles, asset, timeframe, version, data_as_of, predicted_move, band80, band95,
             realised_known=False) -> dict:
    """One log row made at ``data_as_of`` (an hour boundary; the price then is the last close).

    ``predicted_move`` is the predicted relative price change; ``band80``/``band95`` are the
    intervals' half-widths relative to the predicted price.
    """
    data_as_of = pd.Timestamp(data_as_of)
    target = data_as_of + HORIZON[timeframe]
    current = realised_close(candles, data_as_of)
    predicted = current * (1 + predicted_move)
    row = {"asset": asset, "timeframe": timeframe, "model_version": version, "kind": "linear",
           "client_ab_group": "production", "prediction_time": data_as_of + pd.Timedelta(seconds=30),
           "data_as_of": data_as_of, "target_time": target, "current_price": current,
           "predicted_price": predicted, "lower80": predicted * (1 - band80), "upper80": predicted * (1 + band80),
           "lower95": predicted * (1 - band95), "upper95": predicted * (1 + band95), "confidence": 0.6}
    if realised_known:
        row["realised_price"] = realised_close(candles, target)
        row["realised_at"] = target
    return row


def insert_rows(engine, rows: list[dict]) -> None:
    ensure_table(engine)
    clean = []
    for row in rows:
        row = dict(row)
        for key in ("prediction_time", "data_as_of", "target_time", "realised_at"):
            if row.get(key) is not None:
                row[key] = utc(row[key])
        clean.append(row)
    with engine.begin() as conn:
        conn.execute(insert(prediction_log), clean)
