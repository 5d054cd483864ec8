"""WSGI entry point: `gunicorn flask_api:app` (settings in gunicorn.conf.py)."""

from crypto_predictor.api import create_app

app = create_app()
