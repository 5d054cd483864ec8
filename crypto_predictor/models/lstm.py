"""A small LSTM over a sliding window of the last ``lookback`` feature rows.

Keeping the 2-D contract: ``predict(X)`` returns one value per row, where row i
sees rows ``max(0, i - lookback + 1) .. i`` of X, left-padded by repeating the
first row. To reproduce the prediction for the newest row exactly, pass at least
``context_rows`` (= ``lookback``) trailing rows.

Two engines, one network. Training builds and fits a Keras network, and a model
fresh from ``fit`` predicts with it through a ``tf.function`` (``predict_last``
through an XLA-compiled single-window twin). ``save`` also writes the trained
weights as plain arrays (``lstm_cell.npz``), and ``load`` reads only those: a
loaded model predicts with the numpy forward pass of ``lstm_numpy`` and never
imports TensorFlow, which would cost each serving worker ~540 MB and seconds of
start-up. Bundles saved before the arrays existed load through Keras as before.

TensorFlow is imported only inside this module's functions (fit, saving, or
loading such an older bundle): importing the models package must not pay for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from crypto_predictor.errors import BundleIntegrityError, InvalidInput
from crypto_predictor.models.base import BaseModel, chronological_split
from crypto_predictor.models.lstm_numpy import CHUNK, NumpyLSTM

WEIGHTS_FILE = "lstm.weights.h5"
STATE_FILE = "lstm_scaling.npz"
CELL_FILE = "lstm_cell.npz"  # the same weights as plain arrays, for the numpy forward pass


def _keras():
    # TensorFlow's C++ start-up chatter (CPU flags, missing CUDA) is noise for ops; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    return tf, keras


def left_pad(X: np.ndarray, rows: int) -> np.ndarray:
    """X with its first row repeated ``rows`` times in front: how every engine pads early windows."""
    return np.concatenate([np.repeat(X[:1], rows, axis=0), X])


def windows(X: np.ndarray, lookback: int) -> np.ndarray:
    """(n, lookback, f) float32 windows; window i ends at row i, left-padded with row 0."""
    padded = left_pad(X, lookback - 1).astype(np.float32)
    # sliding_window_view puts the window axis last: (n, f, lookback) -> (n, lookback, f)
    view = np.lib.stride_tricks.sliding_window_view(padded, lookback, axis=0)
    return np.ascontiguousarray(view.transpose(0, 2, 1))


class LSTMModel(BaseModel):
    kind = "lstm"
    QUICK_PARAMS = {"lookback": 8, "units": 8, "epochs": 3, "batch_size": 128, "patience": 2}
    MIN_FIT_ROWS = 20

    def __init__(
        self,
        lookback: int = 24,
        units: int = 32,
        dropout: float = 0.0,
        epochs: int = 20,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        patience: int = 3,
        validation_fraction: float = 0.15,
        gap: int = 0,
        seed: int = 0,
    ):
        self.lookback = lookback
        self.units = units
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.gap = gap
        self.seed = seed

    @property
    def context_rows(self) -> int:
        return int(self.lookback)

    def _build(self, n_features: int):
        _, keras = _keras()
        inputs = keras.Input(shape=(self.lookback, n_features), dtype="float32")
        hidden = keras.layers.LSTM(self.units, dropout=self.dropout)(inputs)
        output = keras.layers.Dense(1)(hidden)
        return keras.Model(inputs, output)

    def _fit(self, X, y):
        if int(self.lookback) < 1:
            raise InvalidInput(f"lookback must be >= 1, got {self.lookback}")
        tf, keras = _keras()
        # Seeds python, numpy and TensorFlow generators: weights init and shuffling repeat.
        keras.utils.set_random_seed(int(self.seed))
        fit_end, val_start = chronological_split(len(X), self.validation_fraction, self.gap)
        # Scaling statistics from the fit part only; y is scaled too (returns are ~1e-2).
        x_mean = X[:fit_end].mean(axis=0)
        x_scale = X[:fit_end].std(axis=0)
        x_scale[x_scale == 0] = 1.0
        y_mean = float(y[:fit_end].mean())
        y_scale = float(y[:fit_end].std()) or 1.0
        W = windows((X - x_mean) / x_scale, self.lookback)
        t = ((y - y_mean) / y_scale).astype(np.float32)

        model = self._build(X.shape[1])
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate, clipnorm=1.0), loss="mse")
        stop = keras.callbacks.EarlyStopping(patience=self.patience, restore_best_weights=True)
        history = model.fit(
            W[:fit_end], t[:fit_end],
            validation_data=(W[val_start:], t[val_start:]),
            epochs=self.epochs, batch_size=self.batch_size, callbacks=[stop], verbose=0,
        )
        losses = history.history["val_loss"]
        self.network_ = model
        self.cell_ = None  # made from the network when saved
        self.x_mean_, self.x_scale_, self.y_mean_, self.y_scale_ = x_mean, x_scale, y_mean, y_scale
        self.epochs_run_ = len(losses)
        self.best_val_loss_ = float(min(losses))
        self._serve = None

    def _serving_fn(self, single: bool = False):
        """The traced network: any batch size, or (single) one XLA-compiled window.

        Built lazily per instance so that refit and load get a fresh trace. The
        single-window function is what serving calls; XLA cuts its cost from ~0.8
        to ~0.3 ms and agrees with the batch path to float32 rounding (~1e-7).
        """
        cache = getattr(self, "_serve", None)
        if cache is None:
            cache = self._serve = {}
        if single not in cache:
            tf, _ = _keras()
            network = self.network_
            spec = tf.TensorSpec((1 if single else None, self.lookback, self.n_features_in_), tf.float32)

            @tf.function(input_signature=[spec], jit_compile=single)
            def serve(batch):
                return network(batch, training=False)

            cache[single] = serve
        return cache[single]

    def _run(self, W: np.ndarray, single: bool = False) -> np.ndarray:
        return self._unscale(self._serving_fn(single)(W).numpy().reshape(-1))

    def _unscale(self, out: np.ndarray) -> np.ndarray:
        return out.astype(np.float64) * self.y_scale_ + self.y_mean_

    def _scaled(self, X):
        return (X - self.x_mean_) / self.x_scale_

    def _predict(self, X):
        if self.network_ is None:
            # Numpy engine: the rows padded like windows(), every window computed in one pass.
            return self._unscale(self.cell_.run(left_pad(self._scaled(X), self.lookback - 1), self.lookback))
        W = windows(self._scaled(X), self.lookback)
        # Chunks bound the memory of one call on long histories.
        return np.concatenate([self._run(W[i : i + CHUNK]) for i in range(0, len(W), CHUNK)])

    def _predict_last(self, X):
        # X holds at most lookback rows here: build only the newest window, padded like windows().
        window = left_pad(self._scaled(X), self.lookback - len(X))
        if self.network_ is None:
            return float(self._unscale(self.cell_.run(window, self.lookback))[0])
        return float(self._run(window[None].astype(np.float32), single=True)[0])

    @staticmethod
    def _layers(network):
        """The network's (LSTM, Dense) layers, whose variables the numpy arrays mirror."""
        _, keras = _keras()
        lstm = next(layer for layer in network.layers if isinstance(layer, keras.layers.LSTM))
        dense = next(layer for layer in network.layers if isinstance(layer, keras.layers.Dense))
        return ((lstm.cell.kernel, "kernel"), (lstm.cell.recurrent_kernel, "recurrent_kernel"),
                (lstm.cell.bias, "bias"), (dense.kernel, "dense_kernel"), (dense.bias, "dense_bias"))

    def _cell(self) -> NumpyLSTM:
        """The weights as plain arrays (kept once made: saving twice writes the same ones)."""
        if getattr(self, "cell_", None) is None:
            self.cell_ = NumpyLSTM(**{name: variable.numpy() for variable, name in self._layers(self.network_)})
        return self.cell_

    def _network(self):
        """The Keras network; a model loaded from arrays gets one rebuilt from them (to re-save it)."""
        if self.network_ is not None:
            return self.network_
        network = self._build(self.n_features_in_)
        for variable, name in self._layers(network):
            variable.assign(self.cell_.arrays[name])
        return network

    def _save(self, directory: Path):
        self._network().save_weights(str(directory / WEIGHTS_FILE))
        self._cell().save_npz(directory / CELL_FILE)
        np.savez(directory / STATE_FILE, x_mean=self.x_mean_, x_scale=self.x_scale_,
                 y=np.array([self.y_mean_, self.y_scale_]))
        return [WEIGHTS_FILE, STATE_FILE, CELL_FILE]

    def _meta(self):
        return {"epochs_run": self.epochs_run_, "best_val_loss": self.best_val_loss_}

    def _load(self, directory: Path, meta):
        if (directory / CELL_FILE).is_file():
            # Serving path: plain arrays, no TensorFlow import.
            self.network_ = None
            self.cell_ = NumpyLSTM.from_npz(directory / CELL_FILE)
            if self.cell_.n_features != self.n_features_in_ or self.cell_.units != int(self.units):
                raise BundleIntegrityError(
                    f"{directory / CELL_FILE} holds an LSTM of {self.cell_.units} units over "
                    f"{self.cell_.n_features} features; model.json says {self.units} over {self.n_features_in_}")
        else:
            # Bundles saved before lstm_cell.npz existed: Keras weights, TensorFlow inference.
            network = self._build(self.n_features_in_)
            network.load_weights(str(directory / WEIGHTS_FILE))
            self.network_ = network
            self.cell_ = None
        with np.load(directory / STATE_FILE, allow_pickle=False) as state:
            self.x_mean_, self.x_scale_ = state["x_mean"], state["x_scale"]
            self.y_mean_, self.y_scale_ = (float(v) for v in state["y"])
        self.epochs_run_ = int(meta.get("epochs_run", 0))
        self.best_val_loss_ = float(meta.get("best_val_loss", float("nan")))
        self._serve = None
