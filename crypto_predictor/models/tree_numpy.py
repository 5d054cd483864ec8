"""xgboost tree ensembles evaluated in numpy from the booster's JSON, for serving.

``Booster.inplace_predict`` costs 0.15-0.3 ms for one row, nearly all of it per-call
overhead (argument JSON, array interface, the C call and result wrapping), while the
tree work itself is a few microseconds. This module walks every tree at once, one
depth level per numpy step, which for one row is several times cheaper.

What it reproduces of xgboost 3.x (``gbtree`` booster, ``reg:squarederror``, numeric
splits, one target; anything else is refused, so the caller can keep xgboost):

* a row goes left at a split when ``float32(x[f]) < split_condition`` (both float32),
  right otherwise; a missing value (NaN) goes the node's ``default_left`` way;
* a leaf's value is its ``split_conditions`` entry (learning rate already applied; in
  random-forest mode, ``num_parallel_tree`` trees per round, already divided by it);
* the prediction is ``base_score`` plus the leaf values of every tree, added one tree
  at a time in float32, in tree order, as xgboost's CPU predictor does: results are
  bit-identical to ``inplace_predict`` and do not depend on batch size.

Layout: each tree is padded to a complete binary tree of depth ``depth`` (the deepest
leaf), stored level by level: level ``L`` holds ``n_trees * 2**L`` nodes and node ``j``
of tree ``t`` sits at ``t * 2**L + j``, so the child of position ``p`` on the next level
is ``2 * p + went_right``. A leaf shallower than ``depth`` is copied to every padded leaf
below it, so whichever way the padding nodes send a row, it lands on the same value.
"""

from __future__ import annotations

import json
from itertools import chain

import numpy as np

from crypto_predictor.errors import BundleIntegrityError

SUPPORTED_OBJECTIVE = "reg:squarederror"
# Padding costs 2**depth nodes a tree: past these, the model stays with xgboost.
MAX_DEPTH = 12
MAX_PADDED_NODES = 1 << 22
CHUNK_ROWS = 1024  # rows per step of the batch loop: bounds memory on long histories


class UnsupportedModel(BundleIntegrityError):
    """The booster uses a feature this evaluator does not reproduce (use xgboost instead)."""


def _number(text) -> float:
    # xgboost 3 writes base_score as a one-element vector string, "[-6.9E-2]"; older, "0.5".
    if isinstance(text, str):
        text = text.strip().strip("[]")
        if "," in text:
            raise UnsupportedModel(f"base_score {text!r} holds several values (multi-target model)")
    return float(text)


class NumpyTrees:
    """A fitted xgboost regression forest as padded per-level arrays; ``predict(X)`` per row."""

    def __init__(self, features, thresholds, default_left, leaves, base_score: float, n_features: int):
        self.features = [np.asarray(f, dtype=np.intp) for f in features]
        self.thresholds = [np.asarray(t, dtype=np.float32) for t in thresholds]
        self.default_left = [np.asarray(d, dtype=bool) for d in default_left]
        self.leaves = np.asarray(leaves, dtype=np.float32)
        self.base_score = np.float32(base_score)
        self.n_features = int(n_features)
        self.depth = len(self.features)
        self.n_trees = len(self.leaves) >> self.depth
        for level, (f, t, d) in enumerate(zip(self.features, self.thresholds, self.default_left)):
            size = self.n_trees << level
            if not (f.shape == t.shape == d.shape == (size,)):
                raise BundleIntegrityError(f"tree level {level} arrays do not hold {size} nodes")
            if f.min() < 0 or f.max() >= self.n_features:
                raise BundleIntegrityError(f"tree level {level} splits on a feature outside 0..{self.n_features - 1}")
        if self.n_trees < 1 or len(self.leaves) != self.n_trees << self.depth:
            raise BundleIntegrityError(
                f"{len(self.leaves)} leaves do not fill {self.n_trees} trees of depth {self.depth}")
        self._roots = np.arange(self.n_trees, dtype=np.intp)

    # ---- building ----------------------------------------------------------------
    @classmethod
    def from_json(cls, raw) -> "NumpyTrees":
        """From xgboost's JSON model (``Booster.save_raw("json")`` or the saved file's text)."""
        try:
            model = json.loads(raw) if isinstance(raw, (str, bytes, bytearray)) else raw
            learner = model["learner"]
            booster = learner["gradient_booster"]
            objective = learner["objective"]["name"]
            params = learner["learner_model_param"]
            if booster.get("name") != "gbtree":
                raise UnsupportedModel(f"booster {booster.get('name')!r} is not gbtree")
            if objective != SUPPORTED_OBJECTIVE:
                raise UnsupportedModel(f"objective {objective!r} is not {SUPPORTED_OBJECTIVE}")
            if int(params.get("num_target", 1)) > 1 or int(params.get("num_class", 0)) > 1:
                raise UnsupportedModel("multi-output models are not supported")
            trees = booster["model"]["trees"]
            base_score, n_features = _number(params["base_score"]), int(params["num_feature"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BundleIntegrityError(f"not an xgboost JSON model: {exc!r}") from None
        if not trees:
            raise UnsupportedModel("the booster holds no trees")
        return cls._from_trees(trees, base_score, n_features)

    @classmethod
    def _from_trees(cls, trees: list[dict], base_score: float, n_features: int) -> "NumpyTrees":
        # Every tree's nodes in one array (children as global ids), walked level by level for
        # all trees at once: loading a 200-tree forest takes milliseconds, not a Python loop per node.
        sizes, left, right, split_index, condition, dleft = _columns(trees)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        shift = np.repeat(offsets, sizes)
        internal = left >= 0
        left = np.where(internal, left + shift, -1)
        right = np.where(internal, right + shift, -1)
        n = len(sizes)
        features, thresholds, default_left, found_leaves = [], [], [], []
        # The frontier: (global node, its tree, its index within the tree's level).
        node, tree, j = offsets, np.arange(n), np.zeros(n, dtype=np.intp)
        level = 0
        while len(node):
            if level > MAX_DEPTH or n << level > MAX_PADDED_NODES:
                # (A node that leads back up to its ancestors ends here too: the walk never ends.)
                raise UnsupportedModel(f"{n} trees of depth {level} or more are too large to pad")
            leaf = left[node] < 0
            found_leaves.append((level, tree[leaf], j[leaf], condition[node[leaf]]))
            split = ~leaf
            pos = (tree[split] << level) + j[split]
            f, t, d = (np.zeros(n << level, dtype=dtype) for dtype in (np.intp, np.float32, bool))
            f[pos], t[pos], d[pos] = split_index[node[split]], condition[node[split]], dleft[node[split]]
            features.append(f), thresholds.append(t), default_left.append(d)
            node = np.concatenate([left[node[split]], right[node[split]]])
            tree = np.concatenate([tree[split], tree[split]])
            j = np.concatenate([2 * j[split], 2 * j[split] + 1])
            level += 1
        depth = level - 1  # the last level held only leaves
        del features[depth:], thresholds[depth:], default_left[depth:]
        leaves = np.full(n << depth, np.nan, dtype=np.float32)
        for at, leaf_tree, leaf_j, value in found_leaves:
            # A leaf at level ``at`` covers 2**(depth - at) padded leaves.
            width = 1 << (depth - at)
            start = (leaf_tree << depth) + leaf_j * width
            leaves[start[:, None] + np.arange(width)] = value[:, None]
        if np.isnan(leaves).any():
            raise BundleIntegrityError("xgboost tree is not a tree (a padded leaf was left unreached)")
        return cls(features, thresholds, default_left, leaves, base_score, n_features)

    # ---- evaluation --------------------------------------------------------------
    def leaf_values(self, X) -> np.ndarray:
        """(rows, trees) float32 value of the leaf each row reaches in each tree."""
        X32 = np.asarray(X, dtype=np.float32)
        if X32.ndim != 2 or X32.shape[1] != self.n_features:
            raise ValueError(f"X must be (rows, {self.n_features}), got shape {X32.shape}")
        n_rows = X32.shape[0]
        missing = np.isnan(X32).any()
        flat = X32.ravel()
        # Per row: the offset of its features in ``flat``; per (row, tree): the node position.
        row_base = (np.arange(n_rows, dtype=np.intp) * self.n_features)[:, None]
        pos = np.broadcast_to(self._roots, (n_rows, self.n_trees))
        for f, t, d in zip(self.features, self.thresholds, self.default_left):
            x = flat[row_base + f[pos]]
            right = x >= t[pos]
            if missing:  # NaN compares False above (left); it goes right unless the node defaults left
                right |= np.isnan(x) & ~d[pos]
            pos = 2 * pos + right
        return self.leaves[pos]

    def predict(self, X) -> np.ndarray:
        """One float64 prediction per row of X (identical to xgboost's float32 result)."""
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        out = np.empty(len(X), dtype=np.float64)
        for start in range(0, len(X), CHUNK_ROWS):
            out[start : start + CHUNK_ROWS] = self._sum(self.leaf_values(X[start : start + CHUNK_ROWS]))
        return out

    def predict_row(self, x) -> float:
        """The prediction for one row (1-D array of the features); equals ``predict`` on that row."""
        x32 = np.asarray(x, dtype=np.float32).reshape(-1)
        if x32.shape != (self.n_features,):
            raise ValueError(f"x must hold {self.n_features} features, got shape {x32.shape}")
        if np.isnan(x32).any():
            return float(self._sum(self.leaf_values(x32[None]))[0])
        # The loop of leaf_values for one finite row, with fewer temporaries: ~2-3 us a level.
        pos = self._roots
        for f, t in zip(self.features, self.thresholds):
            right = x32.take(f.take(pos)) >= t.take(pos)
            pos = pos + pos
            pos += right
        values = np.empty(self.n_trees + 1, dtype=np.float32)
        values[0] = self.base_score
        self.leaves.take(pos, out=values[1:])
        return float(values.cumsum()[-1])

    def _sum(self, values: np.ndarray) -> np.ndarray:
        # float32, one tree after another from base_score: xgboost's order and rounding
        # (cumsum adds sequentially; np.sum would add pairwise and round differently).
        start = np.full((len(values), 1), self.base_score, dtype=np.float32)
        return np.cumsum(np.concatenate([start, values], axis=1), axis=1, dtype=np.float32)[:, -1]


# Per-node columns of a tree in xgboost's JSON, and the dtype each is read as.
COLUMNS = {"left_children": np.int64, "right_children": np.int64, "split_indices": np.int64,
           "split_conditions": np.float32, "default_left": bool}


def _columns(trees: list[dict]):
    """(sizes, left, right, split_index, condition, default_left): every tree's nodes in one array each."""
    try:
        lists = {name: [tree[name] for tree in trees] for name in COLUMNS}
        sizes = np.array([len(column) for column in lists["left_children"]], dtype=np.intp)
        if any([len(column) for column in lists[name]] != sizes.tolist() for name in COLUMNS):
            raise BundleIntegrityError("xgboost tree arrays differ in length")
        # One conversion per column (a list chained over all trees), not one per tree.
        arrays = [np.fromiter(chain.from_iterable(lists[name]), dtype=dtype, count=int(sizes.sum()))
                  for name, dtype in COLUMNS.items()]
        if any(np.any(tree.get("split_type", [])) for tree in trees) or any(
                int(tree.get("tree_param", {}).get("size_leaf_vector", "1")) > 1 for tree in trees):
            raise UnsupportedModel("categorical splits and vector leaves are not supported")
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleIntegrityError(f"malformed xgboost tree: {exc!r}") from None
    if (sizes < 1).any():
        raise BundleIntegrityError("an xgboost tree has no nodes")
    left, right = arrays[0], arrays[1]
    size = np.repeat(sizes, sizes)  # per node: the size of its tree
    internal = left >= 0
    for child in (left[internal], right[internal]):
        # Children are local ids after their parent's: 1..size-1 (the root is nobody's child).
        if (child < 1).any() or (child >= size[internal]).any():
            raise BundleIntegrityError("xgboost tree has out-of-range children")
    return (sizes, *arrays)
