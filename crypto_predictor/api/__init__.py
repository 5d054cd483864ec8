"""The Flask application factory. Serving endpoints (v1 predict, batch, analysis...) arrive with the Serving issue."""

from __future__ import annotations

from flask import Flask

from crypto_predictor.config import Config


def create_app(config: Config | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_object(config or Config())
    app.config.setdefault("MAX_CONTENT_LENGTH", 64 * 1024)

    from crypto_predictor.api.errors import register_error_handlers
    from crypto_predictor.api.health import bp as health_bp
    from crypto_predictor.market.store import CandleStore

    app.extensions["candle_store"] = CandleStore(app.config["DATABASE_URL"])
    register_error_handlers(app)
    app.register_blueprint(health_bp, url_prefix="/api")
    return app
