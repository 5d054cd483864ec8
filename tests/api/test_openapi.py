"""The OpenAPI document: structurally valid OpenAPI 3, and it documents every route there is.

openapi-spec-validator is not installed (nor jsonschema), so the structure is checked here:
required top-level fields, operation objects, parameters, and every $ref resolving.
"""

from __future__ import annotations

import re

import pytest

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def spec(app):
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_required_openapi_fields(spec):
    assert re.fullmatch(r"3\.\d+\.\d+", spec["openapi"])
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["paths"]
    for path, item in spec["paths"].items():
        assert path.startswith("/")
        assert set(item) <= HTTP_METHODS and item
        declared = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            assert op["responses"] and all(re.fullmatch(r"[1-5]\d\d|default", c) for c in op["responses"])
            for response in op["responses"].values():
                assert response["description"]
            params = op.get("parameters", [])
            for p in params:
                assert p["in"] in ("path", "query", "header", "cookie") and p["name"]
                assert "schema" in p or "content" in p
                if p["in"] == "path":
                    assert p["required"] is True
            assert {p["name"] for p in params if p["in"] == "path"} == declared, (method, path)
            if "requestBody" in op:
                assert op["requestBody"]["content"]


def test_every_ref_resolves(spec):
    refs = set(_refs(spec))
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in spec["components"]["schemas"], ref


def test_every_route_is_documented(app, spec):
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    registered = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            registered.add((path, method.lower()))
    assert {r for r in registered if r[0].startswith("/api/v1")}  # the v1 routes exist at all
    assert registered == documented


def test_every_error_response_uses_the_error_schema(spec):
    for item in spec["paths"].values():
        for op in item.values():
            for code, response in op["responses"].items():
                if code.startswith(("4", "5")) and "content" in response:
                    schema = response["content"]["application/json"]["schema"]["$ref"]
                    assert schema.endswith(("/Error", "/Health"))


def test_docs_page_lists_every_operation(app, spec):
    response = app.test_client().get("/api/v1/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<script" not in page and "http://" not in page and "https://" not in page  # offline, no CDN
    for path, item in spec["paths"].items():
        for method in item:
            assert f"{method.upper()} {path}" in page


def test_documented_fields_match_real_answers(app, spec):
    client = app.test_client()
    schemas = spec["components"]["schemas"]
    body = client.post("/api/v1/predict", json={"symbol": "bitcoin"}).get_json()
    assert set(body["data"]) == set(schemas["PredictionData"]["properties"])
    assert set(schemas["PredictionData"]["required"]) <= set(body["data"])
    assert set(body["metadata"]) == set(schemas["Prediction"]["properties"]["metadata"]["properties"])
    batch = client.post("/api/v1/predict/batch", json={"symbols": ["BTC", "nope"]}).get_json()
    assert set(batch["metadata"]) == set(schemas["Batch"]["properties"]["metadata"]["properties"])
    for entry in batch["data"]:
        assert set(entry) <= set(schemas["BatchEntry"]["properties"])
    analysis = client.get("/api/v1/analysis/bitcoin?days=5").get_json()["data"]
    assert set(analysis) == set(schemas["Analysis"]["properties"]["data"]["properties"])
