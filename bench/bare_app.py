"""The floor for bench_serving: a bare Flask app answering the same POST with a small JSON body.

No model, cache, logging or limiter: it parses the body and echoes a prediction-shaped object,
so its req/s is what Flask + Gunicorn cost on this machine. Served by bench_serving as
``gunicorn -c gunicorn.conf.py bench.bare_app:app``, with the real app's Gunicorn settings.
"""

from __future__ import annotations

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/api/v1/predict")
def predict():
    body = request.get_json(force=True, silent=True) or {}
    return jsonify({"status": "success",
                    "data": {"symbol": body.get("symbol"), "timeframe": body.get("timeframe", "24h"),
                             "predicted_price": 0.0, "model_version": "bare"},
                    "metadata": {"cache_hit": False}})


@app.get("/api/health")
def health():
    return jsonify({"status": "ok"})
