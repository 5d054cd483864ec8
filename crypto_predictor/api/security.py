"""HTTP hardening switched by configuration: client address behind proxies, CORS, the /metrics token.

- PROXY_FIX_X_FOR=n trusts the last n X-Forwarded-For hops (werkzeug's ProxyFix), so rate
  limits and A/B buckets key on the real client. 0 (the default) ignores the header: without
  a proxy in front, anyone could put any address there.
- CORS is off unless CORS_ORIGINS lists origins (the app's web build); then only those origins
  get CORS headers, only on /api/*, preflight included. No cookies or credentials are involved.
- /metrics is open unless METRICS_TOKEN is set; then it needs ``Authorization: Bearer <token>``
  (Prometheus: ``authorization: {credentials: ...}``). It is a separate secret from ADMIN_TOKEN
  so a scraper cannot clear caches. Open is the default because the figures hold no secrets or
  client data and local scrapers should work without setup; a public deployment sets it.
"""

from __future__ import annotations

from flask import Flask, request

from crypto_predictor.api.auth import bearer_matches, presented_bearer, unauthorized

METRICS_PATH = "/metrics"
CORS_RESOURCES = r"/api/*"
# What the app's web build needs: JSON bodies, its client id, request ids and retry hints back.
CORS_ALLOW_HEADERS = ["Content-Type", "X-Client-Id", "X-Request-Id"]
CORS_EXPOSE_HEADERS = ["X-Request-Id", "Retry-After"]
CORS_MAX_AGE = 600


def init_proxy_fix(app: Flask) -> None:
    hops = int(app.config.get("PROXY_FIX_X_FOR") or 0)
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)


def init_cors(app: Flask) -> None:
    origins = list(app.config.get("CORS_ORIGINS") or [])
    if not origins:
        return
    from flask_cors import CORS

    CORS(app, resources={CORS_RESOURCES: {"origins": origins}}, methods=["GET", "POST", "OPTIONS"],
         allow_headers=CORS_ALLOW_HEADERS, expose_headers=CORS_EXPOSE_HEADERS, max_age=CORS_MAX_AGE,
         supports_credentials=False)

    @app.after_request
    def vary_on_origin(response):
        # Listed origins get CORS headers and others none, so every /api answer depends on Origin;
        # flask-cors adds Vary only for several origins, and a shared cache must never mix them up.
        if request.path.startswith("/api/"):
            response.vary.add("Origin")
        return response


def init_metrics_token(app: Flask) -> None:
    if not app.config.get("METRICS_TOKEN"):
        return  # open: no hook at all, rather than one more check on every request

    @app.before_request
    def require_metrics_token():
        expected = app.config.get("METRICS_TOKEN") or ""
        if expected and request.path == METRICS_PATH and not bearer_matches(presented_bearer(), expected):
            return unauthorized("metrics")
        return None


def init_security(app: Flask) -> None:
    init_proxy_fix(app)
    init_cors(app)
    init_metrics_token(app)
