# syntax=docker/dockerfile:1
# The API image: nginx (deploy/nginx.conf) in front of Gunicorn (gunicorn.conf.py) serving
# flask_api:app, both as a non-root user (deploy/start.sh). nginx holds slow clients, which would
# otherwise tie up the sync workers (bench/bench_slow_clients.py).
#
#   docker build -t crypto-predictor .
#   docker run -p 8000:8000 -e DATABASE_URL=postgresql+psycopg://... \
#       -v "$PWD/improved_models:/app/improved_models" crypto-predictor
#
# No data and no model bundles are baked in: mount the model store at /app/improved_models (or
# set MODELS_DIR) and point DATABASE_URL at the store. To ship the bundles of the build context
# inside the image instead: --build-arg INCLUDE_MODELS=1.

# Bundles reach this throwaway stage only; the image copies them when INCLUDE_MODELS=1.
FROM python:3.11-slim AS models
ARG INCLUDE_MODELS=0
COPY improved_models/ /context/improved_models/
RUN mkdir /bundles && if [ "$INCLUDE_MODELS" = "1" ]; then cp -a /context/improved_models/. /bundles/; fi

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/cp-metrics

WORKDIR /app
# Every dependency is pinned (requirements.txt); the wheels bundle their native libraries.
COPY requirements.txt .
RUN apt-get update && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir -r requirements.txt \
    && useradd --create-home --uid 10001 --user-group app

# The code and entry points only, named one by one: no tests, data, database or bundles by accident.
COPY --chown=10001:10001 crypto_predictor/ crypto_predictor/
COPY --chown=10001:10001 deploy/ deploy/
COPY --chown=10001:10001 flask_api.py gunicorn.conf.py train_model.py evaluate_model.py deploy_model.py ./
COPY --from=models --chown=10001:10001 /bundles/ /app/improved_models/
# The default SQLite store and the model store must be writable by the app user.
RUN mkdir -p instance improved_models && chown 10001:10001 instance improved_models

USER 10001:10001
EXPOSE 8000
# Liveness (/api/health/live), through nginx: unhealthy only when the container cannot answer at all
# (a restart may help). Not ready (no model, store down, data too old) is /api/health's to say, for
# whatever routes traffic; restarting would not fix those.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health/live' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["deploy/start.sh"]
