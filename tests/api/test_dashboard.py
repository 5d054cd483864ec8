"""/dashboard through the Flask client: who gets in, what each page holds, what it never shows.
(The same pages in a real browser against a real Gunicorn: tests/integration/test_dashboard_browser.py.)"""

from __future__ import annotations

import re
import sqlite3

import pytest
from sqlalchemy import update

from crypto_predictor.api.dashboard import COOKIE
from crypto_predictor.storage.tables import prediction_log

TOKEN = "t0ken-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PAGES = ("/dashboard/", "/dashboard/pair/bitcoin/1h", "/dashboard/pair/ETH/24h", "/dashboard/compare")


@pytest.fixture(scope="module")
def client(make_app, quick_bundle, tmp_path_factory):
    own = tmp_path_factory.mktemp("dashboard") / "store.db"  # its own log, realised below
    with sqlite3.connect(quick_bundle.database_url.removeprefix("sqlite:///")) as source, sqlite3.connect(own) as copy:
        source.backup(copy)
    with sqlite3.connect(own) as copy:  # what other tests logged is not this one's
        if copy.execute("SELECT 1 FROM sqlite_master WHERE name = 'prediction_log'").fetchone():
            copy.execute("DELETE FROM prediction_log")
    app = make_app(DASHBOARD_TOKEN=TOKEN, DATABASE_URL=f"sqlite:///{own}", RETRAIN_MIN_SAMPLES=1)
    client = app.test_client()
    client.post("/api/v1/predict", json={"symbol": "BTC", "timeframe": "1h"})  # a logged prediction
    service = app.extensions["prediction_service"].service
    service.log.flush(timeout=5)
    t = prediction_log.c
    with service.store.engine.begin() as conn:  # as if it had been realised, far outside its intervals
        conn.execute(update(prediction_log).values(target_time=t.data_as_of, realised_at=t.data_as_of,
                                                   realised_price=t.current_price * 1.5))
    return client


@pytest.mark.parametrize("path", PAGES)
def test_every_page_answers_the_bearer_token_with_charts(client, path):
    page = client.get(path, headers=BEARER)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Cache-Control"] == "no-store" and "script-src" not in page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]  # no script can run at all
    html = page.get_data(as_text=True)
    assert "<script" not in html and html.count('class="mark') >= 1


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
def test_a_missing_or_wrong_token_gets_the_login_form_and_no_data(client, headers):
    for path in PAGES:
        page = client.get(path, headers=headers)
        html = page.get_data(as_text=True)
        assert page.status_code == 401 and 'name="token"' in html, path
        assert "bitcoin" not in html.replace("/dashboard/pair/bitcoin", "") and "mark" not in html
    assert client.get("/dashboard/", headers={"Authorization": "Bearer wrong"}).headers["WWW-Authenticate"]


def test_the_login_form_sets_a_signed_cookie_and_sign_out_clears_it(make_app):
    client = make_app(DASHBOARD_TOKEN=TOKEN).test_client()
    wrong = client.post("/dashboard/login", data={"token": "nope", "next": "/dashboard/compare"})
    assert wrong.status_code == 401 and "Wrong token" in wrong.get_data(as_text=True)
    assert client.get_cookie(COOKIE, path="/dashboard") is None
    ok = client.post("/dashboard/login", data={"token": TOKEN, "next": "/dashboard/compare"})
    assert ok.status_code == 303 and ok.headers["Location"].endswith("/dashboard/compare")
    cookie = client.get_cookie(COOKIE, path="/dashboard")
    assert cookie.http_only and cookie.same_site == "Strict" and TOKEN not in cookie.value
    assert client.get("/dashboard/compare").status_code == 200
    client.set_cookie(COOKIE, cookie.value[:-2] + "xx", path="/dashboard")  # tampered
    assert client.get("/dashboard/").status_code == 401
    client.set_cookie(COOKIE, cookie.value, path="/dashboard")
    assert client.post("/dashboard/logout").status_code == 303
    assert client.get("/dashboard/").status_code == 401


def test_a_cookie_signed_under_another_token_is_refused(make_app):
    old = make_app(DASHBOARD_TOKEN="old-token").test_client()
    old.post("/dashboard/login", data={"token": "old-token"})
    value = old.get_cookie(COOKIE, path="/dashboard").value
    new = make_app(DASHBOARD_TOKEN=TOKEN).test_client()
    new.set_cookie(COOKIE, value, path="/dashboard")
    assert new.get("/dashboard/").status_code == 401  # rotating the token signs everybody out


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/dashboard", "/api/v1/admin/cache/clear",
                                    "/dashboard\\@evil"])
def test_login_only_redirects_inside_the_dashboard(make_app, target):
    client = make_app(DASHBOARD_TOKEN=TOKEN).test_client()
    answer = client.post("/dashboard/login", data={"token": TOKEN, "next": target})
    assert answer.status_code == 303 and answer.headers["Location"] == "/dashboard/"


def test_off_without_a_token_unless_opened(make_app):
    off = make_app().test_client().get("/dashboard/")
    assert off.status_code == 404 and "DASHBOARD_TOKEN" in off.get_data(as_text=True)
    assert make_app(DASHBOARD_OPEN=True).test_client().get("/dashboard/").status_code == 200


def test_the_overview_shows_versions_figures_and_flags_below_the_retrain_thresholds(client, quick_bundle):
    html = client.get("/dashboard/", headers=BEARER).get_data(as_text=True)
    assert f'id="production-version">{quick_bundle.production}<' in html
    assert f'id="challenger-version">{quick_bundle.challenger}<' in html
    assert html.count('class="warn"') == 1  # bitcoin 1h's live cov80 (0 of 1) is below RETRAIN_MIN_COVERAGE80
    for section in ("pairs", "freshness", "jobs", "versions", "alias-history"):
        assert f'id="{section}"' in html


def test_a_pair_page_shows_the_contributions_of_the_latest_prediction(client, quick_bundle):
    from crypto_predictor.registry.bundle import load_manifest

    html = client.get("/dashboard/pair/bitcoin/1h", headers=BEARER).get_data(as_text=True)
    rows = re.findall(r'<rect class="mark bar', html)
    assert 1 <= len(rows) <= 8 and 'id="contributions"' in html
    shown = float(re.search(r'id="wf-interval-ratio">([0-9.]+)<', html).group(1))  # the skill block's figure
    walk = load_manifest(f"{quick_bundle.models_dir}/{quick_bundle.production}")["metrics"]["overall"]["bitcoin"]["1h"]
    assert shown == pytest.approx(walk["served"]["interval_score_80"] / walk["baseline_quantile"]["interval_score_80"],
                                  abs=5e-4)


@pytest.mark.parametrize("path,status", [("/dashboard/pair/NOTACOIN/1h", 404), ("/dashboard/pair/bitcoin/2h", 400),
                                         ("/dashboard/pair/solana/1h", 404)])
def test_a_bad_pair_is_an_html_error_naming_it(client, path, status):
    page = client.get(path, headers=BEARER)
    assert page.status_code == status and page.mimetype == "text/html"
    assert 'id="error-message"' in page.get_data(as_text=True)


def test_no_page_shows_a_secret(make_app, quick_bundle):
    client = make_app(DASHBOARD_TOKEN=TOKEN, ADMIN_TOKEN="admin-secret", METRICS_TOKEN="metrics-secret").test_client()
    for path in PAGES:
        html = client.get(path, headers=BEARER).get_data(as_text=True)
        for secret in (TOKEN, "admin-secret", "metrics-secret", quick_bundle.database_url, quick_bundle.models_dir):
            assert secret not in html, (path, secret)
