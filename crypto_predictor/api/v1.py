"""The v1 blueprint, mounted at /api/v1; its routes live in the modules imported below."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("v1", __name__)

# Imported for their side effect of adding routes to ``bp``.
from crypto_predictor.api import openapi, v1_info, v1_predict  # noqa: E402,F401
