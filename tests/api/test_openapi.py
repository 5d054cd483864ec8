"""The OpenAPI document: structurally valid OpenAPI 3, documents every route there is, and its\nschemas are the pydantic models that validate requests and describe the real answers.

openapi-spec-validator is not installed (nor jsonschema), so the structure is checked here:
required top-level fields, operation objects, parameters, and every $ref resolving.
"""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from crypto_predictor.api.schemas import Analysis, Batch, Health, Prediction

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
        if rule.endpoint == "static" or rule.rule.startswith("/dashboard"):  # HTML pages for ops, not the API
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
    """The declared response models accept the real answers, and name exactly their fields."""
    client = app.test_client()
    schemas = spec["components"]["schemas"]
    body = client.post("/api/v1/predict", json={"symbol": "bitcoin", "explain": True}).get_json()
    Prediction.model_validate(body)
    assert set(body["data"]) == set(schemas["PredictionData"]["properties"])
    assert set(body["data"]["explanation"]) == set(schemas["Explanation"]["properties"])
    assert set(schemas["PredictionData"]["required"]) <= set(body["data"])
    assert set(body["metadata"]) == set(schemas["PredictionMetadata"]["properties"])
    batch = client.post("/api/v1/predict/batch", json={"symbols": ["BTC", "nope"]}).get_json()
    Batch.model_validate(batch)
    assert set(batch["metadata"]) == set(schemas["BatchMetadata"]["properties"])
    for entry in batch["data"]:
        assert set(entry) <= set(schemas["BatchEntry"]["properties"])
    analysis = client.get("/api/v1/analysis/bitcoin?days=5").get_json()
    Analysis.model_validate(analysis)
    assert set(analysis["data"]) == set(schemas["AnalysisData"]["properties"])
    health = client.get("/api/health")
    Health.model_validate(health.get_json())


def test_a_wrong_answer_is_refused_by_the_declared_model(app):
    body = app.test_client().post("/api/v1/predict", json={"symbol": "bitcoin"}).get_json()
    body["data"]["direction"] = "sideways"
    with pytest.raises(ValidationError):
        Prediction.model_validate(body)


def test_request_schemas_come_from_the_validating_models(spec):
    predict = spec["paths"]["/api/v1/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/PredictRequest")
    body = spec["components"]["schemas"]["PredictRequest"]
    assert body["required"] == ["symbol"] and body["properties"]["timeframe"]["enum"] == ["1h", "24h", "7d", "30d"]
    assert body["properties"]["symbol"]["maxLength"] == 64
    batch = spec["components"]["schemas"]["BatchRequest"]["properties"]["symbols"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 50)
    days = {p["name"]: p for p in spec["paths"]["/api/v1/analysis/{symbol}"]["get"]["parameters"]}["days"]
    assert days["in"] == "query" and (days["schema"]["minimum"], days["schema"]["maximum"]) == (1, 365)
