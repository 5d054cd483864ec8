"""A cached batch reads the newest candle times once for all its symbols, not once per symbol."""

from __future__ import annotations

from sqlalchemy import event


def test_batch_cache_lookup_asks_for_newest_candles_once(make_app):
    app = make_app(LATEST_TIME_TTL_SECONDS=0)  # no memo: every read of the newest times is a query
    service = app.extensions["prediction_service"].service
    newest = []
    event.listen(service.store.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: newest.append(statement)
                 if "max(candles.open_time)" in statement.lower() else None)
    client = app.test_client()
    body = {"symbols": ["bitcoin", "NOPE", "ETH", "BTCUSDT"], "timeframe": "1h"}
    first = client.post("/api/v1/predict/batch", json=body).get_json()
    assert [e["status"] for e in first["data"]] == ["success", "error", "success", "success"]
    assert first["metadata"]["cache_hits"] == 0
    # One query for the cache keys of the whole batch, one for the predictions of the misses.
    assert len(newest) == 2
    newest.clear()
    again = client.post("/api/v1/predict/batch", json=body).get_json()
    assert [e.get("cache_hit") for e in again["data"]] == [True, False, True, True]
    assert again["data"][1]["error"]["code"] == "unknown_symbol"
    assert len(newest) == 1  # every valid symbol was a hit: no prediction ran
