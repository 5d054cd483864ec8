"""The dashboard as a person sees it: Debian's Chromium against a real Gunicorn.

A quick bundle (v1: linear, xgboost and their ensemble; v2: linear as challenger) is trained on the
shared candles minus the newest 72 hours; those hours are then replayed one candle at a time through
the real service, which logs a prediction per asset and timeframe after each (tests/support/replay.py),
and the real `verify` job fills in what happened. Every page must load with status 200, log no console
error, draw its charts and show figures the test computes itself; a missing or wrong token is refused.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from selenium.webdriver.support.wait import WebDriverWait

from crypto_predictor.market.store import CandleStore
from crypto_predictor.registry.aliases import set_alias
from crypto_predictor.serving.live_metrics import history, live_accuracy
from crypto_predictor.training.pipeline import TrainOptions, train_run
from tests.support.browser import chromium, page_errors
from tests.support.gunicorn import REPO, GunicornServer
from tests.support.replay import hold_back, replay
from tests.support.slices import fill_store

pytestmark = pytest.mark.slow

TOKEN = "browser-test-token"
HOURS = 72
ASSETS = ("bitcoin", "ethereum")


@pytest.fixture(scope="module")
def site(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("dashboard_browser")
    url = f"sqlite:///{root / 'store.db'}"
    fill_store(url, data_dir, ASSETS, last_days=60)
    held = hold_back(url, HOURS)
    models = root / "models"
    versions = [train_run(url, list(ASSETS), ["1h", "24h"], TrainOptions(kinds=kinds, quick=True, seed=seed),
                          models, n_jobs=1)[0]
                for kinds, seed in ((("linear", "xgboost", "ensemble"), 1), (("linear",), 2))]
    set_alias(models, "production", versions[0])
    set_alias(models, "challenger", versions[1])
    made = replay(url, models, held)
    job = subprocess.run([sys.executable, "-m", "crypto_predictor", "verify"], cwd=REPO, capture_output=True, text=True,
                         env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"})
    assert job.returncode == 0, job.stderr
    # Threads: Chromium opens spare connections ahead of use, and each would hold a sync worker idle
    # (production puts nginx in front of the sync workers for that reason: deploy/start.sh).
    server = GunicornServer(root, dict(DATABASE_URL=url, MODELS_DIR=str(models), MARKET_DATA_SOURCE="csv",
                                       DASHBOARD_TOKEN=TOKEN, RATELIMIT_ENABLED="0", WEB_CONCURRENCY="2",
                                       GUNICORN_THREADS="4",
                                       RETRAIN_MIN_COVERAGE80="0.9", LOG_LEVEL="warning"))
    server.start()
    try:
        yield server.base, CandleStore(url).engine, versions, made
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def _sign_in(browser, base, token):
    browser.delete_all_cookies()
    browser.get(f"{base}/dashboard/login")
    browser.find_element("id", "token").send_keys(token)
    browser.find_element("id", "sign-in").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_elements("id", "pairs") or d.find_elements("id", "login-error"))
    page_errors(browser)  # drained: what the refused requests before signing in logged is not a page error


def _marks(browser) -> int:
    return len(browser.find_elements("css selector", "svg .mark"))


def test_a_missing_or_wrong_token_is_refused(site, browser):
    base = site[0]
    for headers in ({}, {"Authorization": "Bearer not-it"}):
        answer = requests.get(f"{base}/dashboard/", headers=headers, timeout=10)
        assert answer.status_code == 401 and 'name="token"' in answer.text
    browser.delete_all_cookies()
    browser.get(f"{base}/dashboard/")
    assert browser.find_elements("id", "token") and not browser.find_elements("css selector", "svg")
    _sign_in(browser, base, "not-it")
    assert "Wrong token" in browser.find_element("id", "login-error").text
    assert not browser.find_elements("id", "pairs")


def test_the_overview_draws_skill_and_flags_low_live_coverage(site, browser):
    base, engine, versions, made = site
    assert requests.get(f"{base}/dashboard/", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 200
    _sign_in(browser, base, TOKEN)
    assert browser.current_url.rstrip("/").endswith("/dashboard")
    assert page_errors(browser) == []
    assert browser.find_element("id", "production-version").text == versions[0]
    assert browser.find_element("id", "challenger-version").text == versions[1]
    assert _marks(browser) == 2 * len(ASSETS) * 2  # served and best model, per asset and timeframe
    live = {(r["asset"], r["timeframe"]): r for r in live_accuracy(engine, version=versions[0])}
    rows = browser.find_elements("css selector", "#pairs tbody tr")
    assert len(rows) == 4
    for row in rows:
        cells = [c.text for c in row.find_elements("tag name", "td")]
        figures = live[(cells[0], cells[1])]
        assert cells[8] == str(figures["n"]) and cells[10] == f"{100 * figures['coverage_80']:.1f}%"
        flagged = "warn" in row.find_elements("tag name", "td")[10].get_attribute("class")
        assert flagged == (figures["coverage_80"] < 0.9)  # RETRAIN_MIN_COVERAGE80 of this server
    jobs = browser.find_element("id", "jobs").text
    assert "verify" in jobs and "ok" in jobs and made == HOURS * 4


@pytest.mark.parametrize("asset,timeframe", [("bitcoin", "1h"), ("ethereum", "24h")])
def test_a_pair_page_draws_predictions_coverage_calibration_and_contributions(site, browser, asset, timeframe):
    base, engine, versions, _ = site
    path = f"/dashboard/pair/{asset}/{timeframe}"
    assert requests.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 200
    _sign_in(browser, base, TOKEN)
    browser.get(base + path)
    assert page_errors(browser) == []
    dots = browser.find_elements("css selector", "svg .mark.dot.predicted")
    logged = history(engine, asset, limit=1000, timeframe=timeframe)  # distinct predictions (an hour the
    assert len(dots) == len(logged) > HOURS - 5  # exchange skipped repeats its newest candle's prediction)
    assert len(browser.find_elements("css selector", "svg .mark.band")) == 2  # 80% and 95%
    assert len(browser.find_elements("css selector", "svg .mark.line.cov80")) == 1
    assert len(browser.find_elements("css selector", "svg .mark.dot.walk")) == 2  # calibration at 80 and 95
    explained = requests.get(f"{base}/api/v1/predict", params={"symbol": asset, "timeframe": timeframe,
                                                               "explain": "true"}, timeout=10).json()["data"]
    features = [c["feature"] for c in explained["explanation"]["contributions"]]
    bars = browser.find_elements("css selector", "svg .mark.bar")
    assert len(bars) == len(features)
    table = [r.find_elements("tag name", "td")[0].text for r in
             browser.find_elements("css selector", "#contributions tbody tr")][: len(features)]
    assert table == features
    live = live_accuracy(engine, version=versions[0], asset=asset, timeframe=timeframe)[0]
    assert browser.find_element("id", "live-coverage").text.startswith(f"{live['n']} ·")


def test_the_comparison_puts_both_versions_side_by_side(site, browser):
    base, _, versions, _ = site
    _sign_in(browser, base, TOKEN)
    browser.get(f"{base}/dashboard/compare")
    assert page_errors(browser) == []
    assert f"Production {versions[0]} vs challenger {versions[1]}" in browser.find_element("tag name", "h1").text
    assert len(browser.find_elements("css selector", "#comparison tbody tr")) == 4
    assert _marks(browser) == 2 * 4  # served and best-model differences per pair
