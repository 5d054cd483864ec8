"""Admin endpoints: bearer token, disabled without one, and what reload / cache clear really do."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from crypto_predictor.api.admin import bearer_matches
from crypto_predictor.registry.aliases import set_alias
from tests.api.helpers import assert_error

TOKEN = "adm-" + "x7Q9" * 8
RELOAD = "/api/v1/admin/models/reload"
CLEAR = "/api/v1/admin/cache/clear"
INFO = "/api/v1/admin/request-info"


def _auth(token=TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def admin_client(make_app):
    return make_app(ADMIN_TOKEN=TOKEN).test_client()


@pytest.mark.parametrize("path,method", [(RELOAD, "post"), (CLEAR, "post"), (INFO, "get")])
def test_without_a_configured_token_admin_is_disabled(client, path, method):
    # Even a request carrying some token is refused: there is no default secret.
    response = getattr(client, method)(path, headers=_auth("anything"))
    assert_error(response, 403, "admin_disabled")


@pytest.mark.parametrize("headers,invalid_token", [
    ({}, False),
    ({"Authorization": f"Basic {TOKEN}"}, False),
    ({"Authorization": "Bearer "}, False),
    (_auth(TOKEN[:-1]), True),
    (_auth(TOKEN + "x"), True),
    (_auth(TOKEN.upper()), True),
    (_auth("t\u00f6k\u00e9n"), True),  # non-ASCII must not blow up the comparison
])
def test_missing_or_wrong_token_is_401_with_a_bearer_challenge(admin_client, headers, invalid_token):
    response = admin_client.post(RELOAD, headers=headers)
    assert_error(response, 401, "unauthorized")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_token"' in challenge) is invalid_token
    assert TOKEN not in response.get_data(as_text=True)


def test_bearer_matches():
    assert bearer_matches(TOKEN, TOKEN)
    assert bearer_matches("Bearer-looking t\u00f6ken", "Bearer-looking t\u00f6ken")
    assert not bearer_matches(TOKEN, TOKEN + "x")
    assert not bearer_matches(None, TOKEN)
    assert not bearer_matches("", "")  # no configured token never matches, not even an empty one


def test_a_body_over_the_limit_is_refused_though_admin_reads_none(admin_client):
    response = admin_client.post(CLEAR, headers=_auth(), data=b"x" * (64 * 1024 + 1))
    assert_error(response, 413, "payload_too_large")
    assert admin_client.post(CLEAR, headers=_auth(), json={}).status_code == 200


def test_admin_answers_are_not_cacheable_and_name_the_worker(admin_client):
    response = admin_client.get(INFO, headers=_auth())
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json()["data"]["worker_pid"] == os.getpid()


def test_reload_switches_models_now_despite_a_long_poll(make_app, quick_bundle, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(quick_bundle.models_dir, models)
    app = make_app(ADMIN_TOKEN=TOKEN, MODELS_DIR=str(models), MODEL_POLL_SECONDS=3600, CACHE_ENABLED=False)
    client = app.test_client()

    def served():
        response = client.post("/api/v1/predict", json={"symbol": "bitcoin", "timeframe": "1h"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["data"]["model_version"]

    assert served() == quick_bundle.production
    set_alias(models, "production", quick_bundle.challenger)
    assert served() == quick_bundle.production  # the worker would not look again for an hour

    body = client.post(RELOAD, headers=_auth()).get_json()
    assert body["status"] == "success"
    data = body["data"]
    assert data["swapped"] is True and data["refused"] is None
    assert data["production"] == quick_bundle.challenger == data["challenger"]
    assert served() == quick_bundle.challenger
    assert client.post(RELOAD, headers=_auth()).get_json()["data"]["swapped"] is False  # nothing changed since


def test_cache_clear_empties_the_in_process_cache(make_app):
    client = make_app(ADMIN_TOKEN=TOKEN).test_client()

    def cache_hit():
        return client.post("/api/v1/predict", json={"symbol": "ethereum"}).get_json()["metadata"]["cache_hit"]

    assert [cache_hit(), cache_hit()] == [False, True]
    data = client.post(CLEAR, headers=_auth()).get_json()["data"]
    assert (data["cleared"], data["backend"], data["scope"]) == (True, "BoundedMemoryCache", "this worker only")
    assert cache_hit() is False


def test_cache_clear_on_redis_reaches_every_worker(make_app, redis_url):
    # Two apps on one Redis stand for two Gunicorn workers (or instances).
    near = 0.5
    first = make_app(ADMIN_TOKEN=TOKEN, CACHE_REDIS_URL=redis_url, NEAR_CACHE_SECONDS=near).test_client()
    second = make_app(ADMIN_TOKEN=TOKEN, CACHE_REDIS_URL=redis_url, NEAR_CACHE_SECONDS=near).test_client()

    def cache_hit(client):
        return client.post("/api/v1/predict", json={"symbol": "bitcoin"}).get_json()["metadata"]["cache_hit"]

    assert [cache_hit(first), cache_hit(second)] == [False, True]
    data = first.post(CLEAR, headers=_auth()).get_json()["data"]
    assert (data["cleared"], data["backend"], data["scope"]) == (True, "RedisCache", "every worker and instance")
    assert data["near_cache_seconds"] == near
    assert cache_hit(first) is False  # the answering worker dropped its near copy at once
    time.sleep(near + 0.1)  # the other worker's copy expires within NEAR_CACHE_SECONDS
    assert cache_hit(second) is True  # ...and it finds what the first stored since
    first.post(CLEAR, headers=_auth())
    time.sleep(near + 0.1)
    assert cache_hit(second) is False


def test_cache_clear_with_redis_down_is_503(make_app):
    from tests.support.servers import free_port

    client = make_app(ADMIN_TOKEN=TOKEN, CACHE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0").test_client()
    response = client.post(CLEAR, headers=_auth())
    assert_error(response, 503, "cache_unavailable")
    assert response.headers["Retry-After"] == "5"


def test_request_info_shows_the_address_the_app_uses(make_app):
    plain = make_app(ADMIN_TOKEN=TOKEN).test_client()
    proxied = make_app(ADMIN_TOKEN=TOKEN, PROXY_FIX_X_FOR=2).test_client()
    kwargs = {"headers": {**_auth(), "X-Forwarded-For": "203.0.113.7, 198.51.100.1"},
              "environ_base": {"REMOTE_ADDR": "10.0.0.9"}}
    data = plain.get(INFO, **kwargs).get_json()["data"]
    assert (data["remote_addr"], data["peer_addr"], data["proxy_fix_x_for"]) == ("10.0.0.9", "10.0.0.9", 0)
    data = proxied.get(INFO, **kwargs).get_json()["data"]
    assert (data["remote_addr"], data["peer_addr"], data["proxy_fix_x_for"]) == ("203.0.113.7", "10.0.0.9", 2)
    assert data["x_forwarded_for"] == "203.0.113.7, 198.51.100.1"


def test_metrics_token_guards_metrics_only(make_app):
    metrics_token = "met-" + "k3" * 16
    client = make_app(ADMIN_TOKEN=TOKEN, METRICS_TOKEN=metrics_token).test_client()
    assert_error(client.get("/metrics"), 401, "unauthorized")
    assert_error(client.get("/metrics", headers=_auth()), 401)  # the admin token is a different secret
    response = client.get("/metrics", headers=_auth(metrics_token))
    assert response.status_code == 200 and b"cp_http_request_duration_seconds" in response.data
    assert client.get("/api/health").status_code == 200  # nothing else needs it


def test_metrics_are_open_without_a_metrics_token(client):
    assert client.get("/metrics").status_code == 200
