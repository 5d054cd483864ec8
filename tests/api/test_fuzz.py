"""Generated junk never produces a 5xx or a non-JSON error: every answer is < 500 and well-shaped."""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=40))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=5)
                           | st.dictionaries(st.text(max_size=10), kids, max_size=5), max_leaves=15)
names = st.sampled_from(["bitcoin", "BTC", "ethusdt", "ripple", "", " ", "v1", "production", "challenger", "v0",
                         "1h", "24h", "7d", "30d", "2h", "x" * 65, "\u20bf", "\ud800", "null"])
field_values = names | json_values | st.text(max_size=300) | st.just("\u00e9" * 20_000)
predict_bodies = st.fixed_dictionaries({}, optional={"symbol": field_values, "timeframe": field_values,
                                                     "model_version": field_values, "extra": json_values})
batch_bodies = st.fixed_dictionaries({}, optional={
    "symbols": st.lists(names | json_values, max_size=60) | json_values,
    "timeframe": field_values, "model_version": field_values})
raw_bodies = st.binary(max_size=300) | st.sampled_from([b"", b"{", b"[" * 5000, b'{"symbol": "bitcoin"',
                                                        b"\xef\xbb\xbf{}", b'{"symbols": ' + b"[" * 3000])
content_types = st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "application/octet-stream", ""])


def check(response) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code >= 400:
        body = response.get_json(silent=True)
        assert body is not None, response.get_data()[:200]
        assert body["status"] == "error"
        assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
        assert "Traceback" not in body["error"]["message"]
    else:
        assert response.get_json(silent=True) is not None or response.mimetype != "application/json"


@FUZZ
@given(body=predict_bodies | json_values)
def test_predict_json_junk(app, body):
    check(app.test_client().post("/api/v1/predict", data=json.dumps(body), content_type="application/json"))


@FUZZ
@given(body=batch_bodies | json_values)
def test_batch_json_junk(app, body):
    check(app.test_client().post("/api/v1/predict/batch", data=json.dumps(body), content_type="application/json"))


@FUZZ
@given(raw=raw_bodies, content_type=content_types, path=st.sampled_from(["/api/v1/predict", "/api/v1/predict/batch"]))
def test_non_json_bodies(app, raw, content_type, path):
    check(app.test_client().post(path, data=raw, content_type=content_type))


segment = st.text(max_size=30) | names
query = st.dictionaries(st.sampled_from(["days", "interval", "limit", "symbol"]) | st.text(max_size=8),
                        st.text(max_size=20) | st.integers().map(str) | names, max_size=4)


@FUZZ
@given(template=st.sampled_from(["/api/v1/analysis/{}", "/api/v1/predictions/{}/history",
                                 "/api/v1/models/performance/{}", "/api/v1/{}", "/api/{}", "/{}",
                                 "/api/v1/models", "/api/v1/symbols", "/api/health"]),
       seg=segment, qs=query, method=st.sampled_from(["GET", "GET", "GET", "POST", "DELETE", "PUT"]))
def test_random_paths_and_query_strings(app, template, seg, qs, method):
    path = template.format(_quote(seg)) if "{}" in template else template
    query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in qs.items())
    check(app.test_client().open(path, method=method, query_string=query))


def _quote(text: str) -> str:
    # surrogatepass: lone surrogates go out as the invalid UTF-8 bytes a broken client would send
    return quote(text.encode("utf-8", "surrogatepass"), safe="")
