"""Synthetic price series for tests of volatility and intervals."""

from __future__ import annotations

import math

import numpy as np


def garch_returns(n: int, seed: int, omega: float = 2e-6, a: float = 0.12, b: float = 0.86):
    """(returns, closes) with GARCH(1,1) volatility clustering: calm and wild stretches alternate."""
    rng = np.random.default_rng(seed)
    var, out = omega / (1 - a - b), np.empty(n)
    for t in range(n):
        out[t] = math.sqrt(var) * rng.standard_normal()
        var = omega + a * out[t] ** 2 + b * var
    return out, 100 * np.exp(np.cumsum(out))
