"""WSGI entry point: `gunicorn flask_api:app` (settings in gunicorn.conf.py).

Building the app loads no model: each Gunicorn worker starts the PredictionService on
its first request, after the fork.
"""

from crypto_predictor.api import create_app

app = create_app()
