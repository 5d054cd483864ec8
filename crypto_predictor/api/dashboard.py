"""/dashboard: server-rendered pages for ops (overview, one pair, production vs challenger).

Access. With DASHBOARD_TOKEN set, a page answers only to ``Authorization: Bearer <token>`` or to the
signed cookie the login form sets (HMAC keyed by the token, so changing the token logs everybody
out; valid DASHBOARD_SESSION_HOURS); anything else gets the login form with 401. Without a token
the dashboard is off (404) unless DASHBOARD_OPEN is set. Pages run no JavaScript (charts are inline
SVG, ``api/charts.py``), so the Content-Security-Policy forbids scripts outright; they show no
setting, URL or token.
"""

from __future__ import annotations

import hashlib
import time

from flask import Blueprint, current_app, make_response, redirect, render_template, request, url_for
from itsdangerous import BadSignature, TimestampSigner
from jinja2 import Undefined

from crypto_predictor.api import dashboard_charts as charts
from crypto_predictor.api.auth import bearer_matches, presented_bearer
from crypto_predictor.api.runtime import get_service
from crypto_predictor.errors import CryptoPredictorError
from crypto_predictor.serving import dashboard as views

bp = Blueprint("dashboard", __name__, template_folder="templates")

COOKIE = "cp_dashboard"
POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
          "frame-ancestors 'none'; base-uri 'none'")


@bp.app_template_filter("pct")
def _pct(value) -> str:
    return "–" if value is None or isinstance(value, Undefined) else f"{100 * float(value):.1f}%"


@bp.app_template_filter("num")
def _num(value, digits: int = 3) -> str:
    return "–" if value is None or isinstance(value, Undefined) else f"{float(value):,.{digits}f}"


def _token() -> str:
    return str(current_app.config.get("DASHBOARD_TOKEN") or "")


def _signer() -> TimestampSigner:
    key = hashlib.sha256(("crypto-predictor dashboard\0" + _token()).encode("utf-8", "surrogateescape")).digest()
    return TimestampSigner(key, salt="dashboard-session")


def _max_age() -> int:
    return int(float(current_app.config.get("DASHBOARD_SESSION_HOURS", 12)) * 3600)


def _signed_in() -> bool:
    if bearer_matches(presented_bearer(), _token()):
        return True
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return False
    try:
        return _signer().unsign(cookie, max_age=_max_age()) == b"ops"
    except BadSignature:  # also SignatureExpired
        return False


def _login_page(status: int, error: str | None = None):
    target = request.full_path.rstrip("?") if request.endpoint != "dashboard.login" else request.args.get("next")
    response = make_response(render_template("dashboard/login.html", error=error, next=_safe_next(target)), status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="dashboard"'
    return response


def _safe_next(target) -> str:
    """Only a path of this dashboard: never another site (``//host``) or scheme."""
    target = str(target or "")
    if target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard/"


@bp.before_request
def _guard():
    if not _token():
        if not current_app.config.get("DASHBOARD_OPEN"):
            return make_response(render_template("dashboard/error.html", status=404, message=(
                "The dashboard is off: set DASHBOARD_TOKEN (or DASHBOARD_OPEN=true on a local machine).")), 404)
        return None
    if request.endpoint == "dashboard.login" or _signed_in():
        return None
    return _login_page(401, "Wrong token." if presented_bearer() else None)


@bp.after_request
def _headers(response):
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.errorhandler(CryptoPredictorError)
def _domain_error(exc: CryptoPredictorError):
    status = exc.http_status if 400 <= exc.http_status < 500 else 503
    return make_response(render_template("dashboard/error.html", status=status, message=exc.message), status)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if not _token():
        return redirect(url_for("dashboard.overview"), 303)
    if request.method == "GET":
        return _login_page(200)
    if not bearer_matches(request.form.get("token", ""), _token()):  # guesses meet the rate limit
        return _login_page(401, "Wrong token.")
    response = redirect(_safe_next(request.form.get("next")), 303)
    response.set_cookie(COOKIE, _signer().sign(b"ops").decode(), max_age=_max_age(), httponly=True,
                        samesite="Strict", secure=request.is_secure, path="/dashboard")
    return response


@bp.post("/logout")
def logout():
    response = redirect(url_for("dashboard.login"), 303)
    response.delete_cookie(COOKIE, path="/dashboard")
    return response


def _page(template: str, **context):
    started = time.perf_counter()
    context.setdefault("signed_in", bool(_token()))
    html = render_template(template, **context)
    response = make_response(html)
    response.headers["Server-Timing"] = f"render;dur={1000 * (time.perf_counter() - started):.1f}"
    return response


@bp.get("/")
def overview():
    service = get_service()
    data = views.overview(service)
    return _page("dashboard/overview.html", data=data, skill_chart=charts.skill(data["rows"]),
                 live_source=service.source is not None, max_age=service.max_age_hours or 2)


@bp.get("/pair/<symbol>/<timeframe>")
def pair(symbol: str, timeframe: str):
    data = views.pair_view(get_service(), symbol, timeframe)
    return _page("dashboard/pair.html", data=data, price_chart=charts.predictions(data),
                 coverage_chart=charts.rolling_coverage(data), calibration_chart=charts.calibration(data),
                 contributions_chart=charts.contributions(data["explanation"]))


@bp.get("/compare")
def compare():
    data = views.comparison(get_service())
    return _page("dashboard/compare.html", data=data, difference_chart=charts.mase_difference(data["rows"]))
