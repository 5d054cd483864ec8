"""Exact TreeSHAP contributions of an xgboost regression forest, in numpy, from the booster's JSON.

The path-dependent TreeSHAP of Lundberg et al. (2018), the one ``Booster.predict(pred_contribs=True)``
computes, without importing xgboost in a serving worker. Each leaf is a game on the features of its
root path: with ``o_j`` = 1 when the row follows the path at feature j's splits (all of them, when j
splits several times on the path) and ``z_j`` = the share of training cover that follows it, the leaf
adds ``v * prod_j (o_j if j is known else z_j)``. A feature's Shapley value in that game is

    v * (o_i - z_i) * sum_k  k! (D-k-1)! / D!  *  [t^k] prod_{j != i} (z_j + o_j t)

and a tree's contributions are the sum over its leaves. Every leaf's path is padded to the deepest
one (D) with dummy players (o = z = 1), which changes nobody's Shapley value, so all leaves of all
trees are one set of (leaves, D) arrays and one row costs O(D^2) numpy steps. The expected value
(the bias) is base_score plus each leaf's value weighted by its cover share.
"""

from __future__ import annotations

import json
from math import factorial

import numpy as np

from crypto_predictor.errors import BundleIntegrityError
from crypto_predictor.models.tree_numpy import _number


class TreeShap:
    """Per-leaf root paths of a forest; ``contributions(x)`` -> (bias, one value per feature)."""

    def __init__(self, raw):
        try:
            model = json.loads(raw) if isinstance(raw, (str, bytes, bytearray)) else raw
            params = model["learner"]["learner_model_param"]
            trees = model["learner"]["gradient_booster"]["model"]["trees"]
            base_score, self.n_features = _number(params["base_score"]), int(params["num_feature"])
            paths = [path for tree in trees for path in _leaf_paths(tree)]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise BundleIntegrityError(f"not an xgboost JSON model with covers: {exc!r}") from None
        self.depth = max((len(edges) for _, edges in paths), default=0)
        n, d = len(paths), self.depth
        self.values = np.array([value for value, _ in paths], dtype=np.float64)
        self.feature = np.zeros((n, d), dtype=np.intp)
        self.threshold = np.zeros((n, d), dtype=np.float32)
        self.default_left = np.zeros((n, d), dtype=bool)
        self.left = np.zeros((n, d), dtype=bool)  # the path takes the split's left child
        self.valid = np.zeros((n, d), dtype=bool)
        ratio = np.ones((n, d))
        for row, (_, edges) in enumerate(paths):
            for col, (f, t, dl, left, z) in enumerate(edges):
                self.feature[row, col], self.threshold[row, col], self.default_left[row, col] = f, t, dl
                self.left[row, col], self.valid[row, col], ratio[row, col] = left, True, z
        if n and d and (self.feature[self.valid].max(initial=0) >= self.n_features):
            raise BundleIntegrityError(f"a split uses a feature outside 0..{self.n_features - 1}")
        self.bias = float(base_score) + float(self.values @ ratio.prod(axis=1)) if n else float(base_score)
        # A feature split on twice in a path is one player: its first position holds the product of
        # the cover shares, later positions become dummies.
        self.first = np.tile(np.arange(d), (n, 1))
        for col in range(d):
            for before in range(col):
                same = self.valid[:, col] & (self.feature[:, before] == self.feature[:, col]) & (
                    self.first[:, col] == col) & self.valid[:, before]
                self.first[same, col] = before
        self.zero = np.ones((n, d))
        rows = np.arange(n)
        for col in range(d):
            np.multiply.at(self.zero, (rows, self.first[:, col]), np.where(self.valid[:, col], ratio[:, col], 1.0))
        self.lead = self.valid & (self.first == np.arange(d))  # the positions that are real players
        self.weights = np.array([factorial(k) * factorial(d - k - 1) / factorial(d) for k in range(d)])

    def contributions(self, x) -> tuple[float, np.ndarray]:
        """(expected value, contribution of each feature) for one row: bias + sum == the prediction."""
        x32 = np.asarray(x, dtype=np.float32).reshape(-1)
        if x32.shape != (self.n_features,):
            raise ValueError(f"x must hold {self.n_features} features, got shape {x32.shape}")
        out = np.zeros(self.n_features)
        n, d = self.feature.shape
        if not (n and d):
            return self.bias, out
        value = x32[self.feature]
        goes_left = np.where(np.isnan(value), self.default_left, value < self.threshold)
        follows = (goes_left == self.left) | ~self.valid
        one = np.ones((n, d), dtype=bool)
        rows = np.arange(n)
        for col in range(d):
            one[rows, self.first[:, col]] &= follows[:, col]
        one = one.astype(np.float64)
        zero = self.zero
        for i in range(d):
            keep = self.lead[:, i]
            if not keep.any():
                continue
            o, z = one[keep], zero[keep]
            poly = np.zeros((len(o), d))
            poly[:, 0] = 1.0
            for j in range(d):
                if j != i:  # multiply by (z_j + o_j t)
                    poly[:, 1:] = poly[:, 1:] * z[:, j : j + 1] + poly[:, :-1] * o[:, j : j + 1]
                    poly[:, 0] *= z[:, j]
            share = poly @ self.weights
            np.add.at(out, self.feature[keep, i], self.values[keep] * (o[:, i] - z[:, i]) * share)
        return self.bias, out


def _leaf_paths(tree: dict) -> list[tuple[float, list]]:
    """(leaf value, [(feature, threshold, default_left, went_left, cover share)...]) for every leaf."""
    left, right = tree["left_children"], tree["right_children"]
    feature, condition = tree["split_indices"], tree["split_conditions"]
    default_left, cover = tree["default_left"], tree["sum_hessian"]
    out, stack = [], [(0, [])]
    while stack:
        node, edges = stack.pop()
        if len(edges) > 64:
            raise BundleIntegrityError("xgboost tree deeper than 64 levels (or not a tree)")
        if left[node] < 0:
            out.append((float(condition[node]), edges))
            continue
        parent = float(cover[node])
        for child, went_left in ((left[node], True), (right[node], False)):
            share = float(cover[child]) / parent if parent > 0 else 0.0
            stack.append((child, edges + [(int(feature[node]), np.float32(condition[node]),
                                           bool(default_left[node]), went_left, share)]))
    return out
