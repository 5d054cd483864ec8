"""Behind a load balancer: PROXY_FIX_X_FOR makes rate limits and A/B see the client, and only then."""

from __future__ import annotations

import pytest

from crypto_predictor.config import Config
from crypto_predictor.serving.service import ab_bucket
from tests.api.helpers import assert_error

PROXY = "10.0.0.9"  # the load balancer's address, the peer of every request


def _via_proxy(client, path, client_addr, **kwargs):
    # What Render delivers: "<client>, <cloudflare edge>" from its proxy's address.
    headers = {"X-Forwarded-For": f"{client_addr}, 104.16.0.1", **kwargs.pop("headers", {})}
    method = client.post if "json" in kwargs else client.get
    return method(path, headers=headers, environ_base={"REMOTE_ADDR": PROXY}, **kwargs)


def test_setting_is_read_and_checked():
    assert Config({}).PROXY_FIX_X_FOR == 0
    assert Config({"PROXY_FIX_X_FOR": "2"}).PROXY_FIX_X_FOR == 2
    with pytest.raises(ValueError, match="PROXY_FIX_X_FOR"):
        Config({"PROXY_FIX_X_FOR": "-1"})


def test_rate_limit_counts_each_client_behind_the_proxy(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_DEFAULT="2 per minute", PROXY_FIX_X_FOR=2).test_client()
    codes = [_via_proxy(client, "/api/v1/symbols", "203.0.113.7").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert _via_proxy(client, "/api/v1/symbols", "198.51.100.23").status_code == 200  # another client
    # A client prepending a forged address is still counted as itself.
    forged = _via_proxy(client, "/api/v1/symbols", "1.2.3.4, 203.0.113.7")
    assert_error(forged, 429, "rate_limited")


def test_without_proxy_fix_the_header_is_ignored(make_app):
    # Off (the default): a client rotating X-Forwarded-For cannot escape its limit.
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_DEFAULT="2 per minute").test_client()
    codes = [_via_proxy(client, "/api/v1/symbols", f"203.0.113.{i}").status_code for i in range(3)]
    assert codes == [200, 200, 429]


def _addresses_on_both_sides(share):
    below = next(f"198.51.100.{i}" for i in range(256) if ab_bucket(f"198.51.100.{i}") < share)
    above = next(f"198.51.100.{i}" for i in range(256) if ab_bucket(f"198.51.100.{i}") >= share)
    return below, above


def test_ab_assignment_follows_the_real_client(make_app, quick_bundle):
    challenger_client, production_client = _addresses_on_both_sides(0.5)
    proxied = make_app(AB_CHALLENGER_SHARE=0.5, PROXY_FIX_X_FOR=2, CACHE_ENABLED=False).test_client()

    def version(client, addr):
        response = _via_proxy(client, "/api/v1/predict", addr, json={"symbol": "bitcoin"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["data"]["model_version"]

    assert version(proxied, challenger_client) == quick_bundle.challenger
    assert version(proxied, production_client) == quick_bundle.production
    assert version(proxied, challenger_client) == quick_bundle.challenger  # sticky
    # Without the setting every client looks like the proxy, so all land in the proxy's bucket.
    plain = make_app(AB_CHALLENGER_SHARE=0.5, CACHE_ENABLED=False).test_client()
    proxy_version = quick_bundle.challenger if ab_bucket(PROXY) < 0.5 else quick_bundle.production
    assert {version(plain, challenger_client), version(plain, production_client)} == {proxy_version}
