"""Live accuracy from the prediction log: realised predictions scored per version, asset and timeframe.

Several workers (and a cached prediction recomputed after expiry) can log the same
prediction more than once; the read side counts each (version, asset, timeframe, data_as_of)
once, using its first row. SQL stays portable (SQLite and PostgreSQL): no dialect-specific
statements, aggregates built from CASE expressions.
"""

from __future__ import annotations

from sqlalchemy import and_, case, func, select

from crypto_predictor.storage.tables import prediction_log
from crypto_predictor.timeutil import iso, utc


def _firsts(*conditions):
    """One row id per distinct prediction (version, asset, timeframe, data_as_of): the first logged."""
    t = prediction_log.c
    return (select(func.min(t.id).label("id")).where(*conditions)
            .group_by(t.model_version, t.asset, t.timeframe, t.data_as_of).subquery())


def _filters(version=None, asset=None, timeframe=None) -> list:
    t = prediction_log.c
    out = []
    if version is not None:
        out.append(t.model_version == version)
    if asset is not None:
        out.append(t.asset == asset)
    if timeframe is not None:
        out.append(t.timeframe == timeframe)
    return out


def _inside(low, high, price):
    return case((low.is_(None), None), (and_(price >= low, price <= high), 1.0), else_=0.0)


def live_accuracy(engine, version=None, asset=None, timeframe=None, by=("model_version", "asset", "timeframe"),
                  since=None, until=None) -> list[dict]:
    """Accuracy of realised predictions, one row per group (``by``: a subset of the three keys).

    ``since`` / ``until`` keep predictions whose target time lies in (since, until] (a rolling window).

    n, directional_accuracy (sign of predicted vs realised move; a predicted no-change counts
    0.5, a realised no-change is left out), mae_pct and naive_mae_pct (|error| as % of the
    price at prediction time, model vs no-change), mase, coverage_80/95, mean_confidence.
    """
    t = prediction_log.c
    window = ([] if since is None else [t.target_time > utc(since)]) + (
        [] if until is None else [t.target_time <= utc(until)])
    firsts = _firsts(t.realised_price.is_not(None), *_filters(version, asset, timeframe), *window)
    pred_move, real_move = t.predicted_price - t.current_price, t.realised_price - t.current_price
    hit = case((real_move == 0, None), (pred_move == 0, 0.5), (pred_move * real_move > 0, 1.0), else_=0.0)
    keys = [getattr(t, k) for k in by]
    query = (select(*keys, func.count().label("n"), func.avg(hit).label("directional_accuracy"),
                    func.avg(func.abs(t.realised_price - t.predicted_price) / t.current_price * 100).label("mae_pct"),
                    func.avg(func.abs(real_move) / t.current_price * 100).label("naive_mae_pct"),
                    func.avg(_inside(t.lower80, t.upper80, t.realised_price)).label("coverage_80"),
                    func.avg(_inside(t.lower95, t.upper95, t.realised_price)).label("coverage_95"),
                    func.avg(t.confidence).label("mean_confidence"),
                    func.min(t.target_time).label("first_target"), func.max(t.target_time).label("last_target"))
             .join_from(prediction_log, firsts, t.id == firsts.c.id).group_by(*keys).order_by(*keys))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    out = []
    for row in rows:
        item = dict(row)
        for key in ("first_target", "last_target"):
            item[key] = iso(item[key])
        for key, value in item.items():
            if isinstance(value, float):
                item[key] = round(value, 6)
        mae, naive = item["mae_pct"], item["naive_mae_pct"]
        item["mase"] = round(mae / naive, 6) if mae is not None and naive else None
        out.append(item)
    return out


def realised_state(engine) -> tuple:
    """(realised rows, newest realised_at): changes whenever a live figure can."""
    t = prediction_log.c
    with engine.connect() as conn:
        count, newest = conn.execute(select(func.count(), func.max(t.realised_at))
                                     .where(t.realised_price.is_not(None))).one()
    return int(count), iso(newest)


def _outcome(row) -> dict:
    realised, predicted, current = row.realised_price, row.predicted_price, row.current_price
    item = {
        "timeframe": row.timeframe, "model_version": row.model_version, "kind": row.kind,
        "prediction_time": iso(row.prediction_time), "data_as_of": iso(row.data_as_of),
        "target_time": iso(row.target_time), "current_price": current, "predicted_price": predicted,
        "interval": {"80": None if row.lower80 is None else [row.lower80, row.upper80],
                     "95": None if row.lower95 is None else [row.lower95, row.upper95]},
        "confidence": row.confidence, "realised_price": realised, "realised_at": iso(row.realised_at),
        "status": "pending" if realised is None else "realised",
        "error": None, "error_percentage": None, "direction_correct": None, "within_80": None, "within_95": None,
    }
    if realised is not None:
        item["error"] = realised - predicted
        item["error_percentage"] = round((realised - predicted) / current * 100, 6)
        moves = (predicted - current) * (realised - current)
        item["direction_correct"] = None if realised == current or predicted == current else bool(moves > 0)
        for key, low, high in (("within_80", row.lower80, row.upper80), ("within_95", row.lower95, row.upper95)):
            item[key] = None if low is None else bool(low <= realised <= high)
    return item


def history(engine, asset: str, limit: int = 50, timeframe=None) -> list[dict]:
    """Distinct logged predictions for an asset, newest logged first, with realised outcome and error."""
    t = prediction_log.c
    firsts = _firsts(*_filters(asset=asset, timeframe=timeframe))
    query = (select(prediction_log).join_from(prediction_log, firsts, t.id == firsts.c.id)
             .order_by(t.prediction_time.desc(), t.id.desc()).limit(int(limit)))
    with engine.connect() as conn:
        return [_outcome(row) for row in conn.execute(query).all()]


def count(engine, **filters) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(prediction_log)
                                .where(*_filters(**filters))).scalar())


def pending(engine) -> int:
    """Logged predictions still waiting for their realised price."""
    t = prediction_log.c
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(t.realised_price.is_(None))).scalar())
