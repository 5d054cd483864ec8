"""The OpenAPI 3.1 document at /api/v1/openapi.json and the docs page at /api/v1/docs, both written
from the routes' own declarations (api/operations.py) and pydantic models (api/schemas.py).

Every registered route is walked (``app.url_map``); its operation gives summary, parameters,
request body, answer and errors, and pydantic gives the JSON Schemas, so the document cannot
drift from what the views validate. The docs page is plain server-rendered HTML built from the
same document: no CDN, no JavaScript, so it works on an offline machine. Both are built once per
app and kept.
"""

from __future__ import annotations

import html
import json
import re

from flask import Blueprint, Response, current_app, jsonify
from pydantic.json_schema import models_json_schema

from crypto_predictor.api.operations import Operation, operation
from crypto_predictor.api.schemas import Error, Health

bp = Blueprint("docs", __name__)

REF = "#/components/schemas/{model}"
COMMON_ERRORS = {
    413: "Body larger than 64 KiB",
    429: "Rate limit exceeded; see the Retry-After header",
    500: "Unexpected server error (no traceback is returned)",
    503: "No model can be loaded, the store is unreachable, or market data is too old "
         "(Retry-After header, error.details.retry_after)",
}
SECURITY_SCHEMES = {
    "adminToken": {"type": "http", "scheme": "bearer", "description": "ADMIN_TOKEN from the environment"},
    "metricsToken": {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN from the environment"},
}
INFO = {
    "title": "crypto-predictor API",
    "version": "1.0.0",
    "description": "Price predictions with confidence intervals, historical analysis and model performance. "
                   "Every error is JSON: {\"status\": \"error\", \"error\": {\"code\", \"message\"}}. Request bodies "
                   "are JSON objects (any Content-Type) of at most 64 KiB; unknown fields are ignored. Responses "
                   "carry X-Request-Id (echoed when sent).",
}
TAGS = ("predict", "analysis", "models", "info", "docs", "ops", "admin")


def _ref(model) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _parameters(op: Operation, path_names: list[str], schemas: dict) -> list[dict]:
    params = [{"name": name, "in": "header", "required": False, "description": text, "schema": {"type": "string"}}
              for name, text in op.headers]
    for model, where in ((op.path, "path"), (op.query, "query")):
        if model is None:
            continue
        props = schemas[model.__name__].get("properties", {})
        for name, prop in props.items():
            if where == "path" and name not in path_names:
                continue
            schema = {k: v for k, v in prop.items() if k not in ("description", "examples", "title")}
            param = {"name": name, "in": where, "required": where == "path",
                     "description": prop.get("description", ""), "schema": schema}
            if prop.get("examples"):
                param["example"] = prop["examples"][0]
            params.append(param)
    return params


def _responses(op: Operation) -> dict:
    if op.media_type is not None:
        ok = {"description": "Success", "content": {op.media_type: {"schema": {"type": "string"}}}}
    else:
        ok = _json(_ref(op.response), "Success") if op.response is not None else {"description": "Success"}
    out = {"200": ok}
    if op.conditional:
        ok["headers"] = {
            "ETag": {"description": "Validator of this answer; send it back as If-None-Match",
                     "schema": {"type": "string"}},
            "Cache-Control": {"description": "max-age: seconds until the next candle closes (the next index "
                                             "value, for sentiment); nothing new can come before",
                              "schema": {"type": "string"}}}
        out["304"] = {"description": "Not modified: If-None-Match holds the current ETag (no body)"}
    errors = {**{k: COMMON_ERRORS[k] for k in op.common_errors}, **op.errors}
    for status in sorted(errors):
        # Readiness answers 503 in its own shape; every other error in the one Error shape.
        schema = _ref(op.response) if status == 503 and op.response is Health else _ref(Error)
        out[str(status)] = _json(schema, errors[status])
    return out


def _operation_object(op: Operation, path_names: list[str], schemas: dict) -> dict:
    out = {"summary": op.summary, "description": op.description, "tags": list(op.tags)}
    params = _parameters(op, path_names, schemas)
    if params:
        out["parameters"] = params
    if op.body is not None:
        media = {"schema": _ref(op.body)}
        if op.example is not None:
            media["example"] = op.example
        out["requestBody"] = {"required": True, "content": {"application/json": media}}
    out["responses"] = _responses(op)
    if op.security:
        out["security"] = [dict(s) for s in op.security]
    return out


def _operations(app) -> list[tuple[str, str, Operation]]:
    """(OpenAPI path, method, declaration) of every route, in the order the app registered them."""
    found = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        op = getattr(view, "__openapi__", None)
        if op is None:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((path, method.lower(), op))
    return found


def build_spec(app) -> dict:
    """The OpenAPI document of ``app``."""
    operations = _operations(app)
    models = {m for _, _, op in operations for m in (op.body, op.query, op.path, op.response) if m is not None}
    models.add(Error)
    _, defs = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
                                 ref_template=REF)
    schemas = defs.get("$defs", {})
    paths: dict = {}
    for path, method, op in operations:
        names = re.findall(r"{(\w+)}", path)
        paths.setdefault(path, {})[method] = _operation_object(op, names, schemas)
    return {"openapi": "3.1.0", "info": INFO, "servers": [{"url": "/"}], "tags": [{"name": t} for t in TAGS],
            "paths": paths, "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES}}


def spec() -> dict:
    """This app's document, built on first use (every route is registered by then)."""
    cached = current_app.extensions.get("openapi")
    if cached is None:
        doc = build_spec(current_app)
        cached = current_app.extensions["openapi"] = {"doc": doc, "html": render_docs(doc)}
    return cached


@bp.get("/openapi.json")
@operation(summary="This document", tags=("docs",), media_type="application/json", common_errors=())
def openapi_json():
    return jsonify(spec()["doc"])


def _render_schema(schema) -> str:
    return f"<pre>{html.escape(json.dumps(schema, indent=2))}</pre>"


def _render_operation(esc, path: str, method: str, op: dict) -> list[str]:
    parts = [f'<h2 id="{esc(method + path)}"><code>{esc(method.upper())} {esc(path)}</code></h2>',
             f"<p><strong>{esc(op['summary'])}</strong></p>"]
    if op.get("description"):
        parts.append(f"<p>{esc(op['description'])}</p>")
    schemes = [name for requirement in op.get("security", []) for name in requirement]
    if schemes:
        optional = " (optional)" if {} in op["security"] else ""
        parts.append(f"<p>Authorization: Bearer {esc(', '.join(schemes))}{optional}</p>")
    if op.get("parameters"):
        rows = "".join(f"<li><code>{esc(p['name'])}</code> ({esc(p['in'])}"
                       f"{', required' if p.get('required') else ''}): {esc(p.get('description', ''))}</li>"
                       for p in op["parameters"])
        parts.append(f"<h3>Parameters</h3><ul>{rows}</ul>")
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        parts.append("<h3>Request body</h3>" + _render_schema(body.get("example") or body["schema"]))
    rows = "".join(f"<li><code>{esc(code)}</code> {esc(r['description'])}</li>" for code, r in op["responses"].items())
    parts.append(f"<h3>Responses</h3><ul>{rows}</ul>")
    return parts


def render_docs(doc: dict) -> str:
    esc = html.escape
    parts = [f"<h1>{esc(doc['info']['title'])} {esc(doc['info']['version'])}</h1>",
             f"<p>{esc(doc['info']['description'])}</p>",
             '<p>Machine-readable: <a href="openapi.json">openapi.json</a></p>']
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            parts += _render_operation(esc, path, method, op)
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        parts.append(f"<h3 id=\"{esc(name)}\">{esc(name)}</h3>" + _render_schema(schema))
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>crypto-predictor API</title>"
            "<style>body{font-family:sans-serif;max-width:60rem;margin:auto;padding:1rem}"
            "pre{background:#f4f4f4;padding:.5rem;overflow:auto}h2{border-top:1px solid #ccc;padding-top:1rem}"
            "</style></head><body>" + "\n".join(parts) + "</body></html>")


@bp.get("/docs")
@operation(summary="Human-readable API documentation", tags=("docs",), media_type="text/html", common_errors=())
def docs():
    return Response(spec()["html"], mimetype="text/html")
