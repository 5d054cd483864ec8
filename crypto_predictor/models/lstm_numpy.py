"""Keras' ``LSTM(units) -> Dense(1)`` forward pass in numpy, so serving never imports TensorFlow.

Follows keras 3's ``LSTMCell`` with its defaults (the ones ``LSTMModel`` builds with):
kernel columns in gate order i, f, c, o; ``sigmoid`` recurrent activation; ``tanh``
activation and output; zero initial state; dropout only acts in training, so not here::

    z = x_t @ kernel + h @ recurrent_kernel + bias
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_c)
    c = f * c + i * g;  h = o * tanh(c)
    out = h_last @ dense_kernel + dense_bias

The arithmetic is float64: it agrees with TensorFlow's float32 to its rounding (~1e-6
relative), and the batch and single-window paths agree with each other to ~1e-15.
"""

from __future__ import annotations

import numpy as np

from crypto_predictor.errors import BundleIntegrityError

ARRAYS = ("kernel", "recurrent_kernel", "bias", "dense_kernel", "dense_bias")
CHUNK = 4096  # windows per step of the batch loop: bounds memory on long histories


class NumpyLSTM:
    """The cell and its dense head; ``run(rows, lookback)`` predicts every window of ``rows``."""

    def __init__(self, kernel, recurrent_kernel, bias, dense_kernel, dense_bias):
        self.arrays = {name: np.asarray(value) for name, value in zip(ARRAYS, (
            kernel, recurrent_kernel, bias, dense_kernel, dense_bias))}
        k, r, b, dk, db = (self.arrays[name] for name in ARRAYS)
        units = r.shape[0] if r.ndim == 2 else -1
        expected = {"kernel": (k.shape[0] if k.ndim == 2 else -1, 4 * units),
                    "recurrent_kernel": (units, 4 * units), "bias": (4 * units,),
                    "dense_kernel": (units, 1), "dense_bias": (1,)}
        for name, shape in expected.items():
            if units < 1 or self.arrays[name].shape != shape:
                raise BundleIntegrityError(f"LSTM array {name} has shape {self.arrays[name].shape}, expected {shape}")
            if not np.isfinite(self.arrays[name]).all():
                raise BundleIntegrityError(f"LSTM array {name} holds NaN or infinite values")
        self.units = units
        self.n_features = k.shape[0]
        # Columns reordered to i, f, o, c so that the three sigmoid gates are one slice; the
        # sigmoid columns are halved (exact: a power of two) because sigmoid(x) = 0.5 + 0.5 *
        # tanh(x / 2): one tanh over all four gates per step, and no exp overflow.
        u = units
        order = np.r_[0 : 2 * u, 3 * u : 4 * u, 2 * u : 3 * u]
        scale = np.r_[np.full(3 * u, 0.5), np.ones(u)]
        self._kernel = k.astype(np.float64)[:, order] * scale
        self._recurrent = r.astype(np.float64)[:, order] * scale
        self._bias = b.astype(np.float64)[order] * scale
        self._dense = dk.astype(np.float64)[:, 0]
        self._dense_bias = float(db[0])

    @classmethod
    def from_npz(cls, path) -> "NumpyLSTM":
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [name for name in ARRAYS if name not in data.files]
                if missing:
                    raise BundleIntegrityError(f"{path} lacks LSTM arrays {missing}")
                return cls(*(data[name] for name in ARRAYS))
        except (OSError, ValueError) as exc:
            raise BundleIntegrityError(f"unreadable {path}: {exc}") from None

    def save_npz(self, path) -> None:
        np.savez(path, **self.arrays)

    def run(self, rows: np.ndarray, lookback: int) -> np.ndarray:
        """Output for each window of ``lookback`` consecutive rows: ``len(rows) - lookback + 1`` values.

        Window j is rows ``j .. j + lookback - 1``, so step t of every window reads row j + t:
        the input projection is computed once per row and sliced, never per window.
        """
        n = len(rows) - lookback + 1
        if n < 1 or rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"rows of shape {rows.shape} hold no window of {lookback} x {self.n_features}")
        out = np.empty(n)
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            projected = rows[start : stop + lookback - 1].astype(np.float64) @ self._kernel + self._bias
            out[start:stop] = self._windows(projected, stop - start, lookback)
        return out

    def _windows(self, projected: np.ndarray, n: int, lookback: int) -> np.ndarray:
        # Buffers and gate views made once: for one window the loop is all numpy call overhead.
        u = self.units
        z = np.empty((n, 4 * u))
        sigmoids, i, f, o, g = z[:, : 3 * u], z[:, :u], z[:, u : 2 * u], z[:, 2 * u : 3 * u], z[:, 3 * u :]
        h, c, ig = np.zeros((n, u)), np.zeros((n, u)), np.empty((n, u))
        for t in range(lookback):
            np.matmul(h, self._recurrent, out=z)
            z += projected[t : t + n]
            np.tanh(z, out=z)
            sigmoids *= 0.5
            sigmoids += 0.5
            c *= f
            np.multiply(i, g, out=ig)
            c += ig
            np.tanh(c, out=h)
            h *= o
        return h @ self._dense + self._dense_bias
