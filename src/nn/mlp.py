"""The assignment's net: input -> ReLU hidden layer -> softmax output, pure NumPy, no I/O.

cost(params) = mean cross-entropy + decay * (||W1||^2 + ||W2||^2)   (biases are not decayed)

The gradient flows back from the output through dL/dz = softmax(z) - y. Two forms of the same
mathematics live here:
- `cost_grad`: the readable reference, allocation and all; tests check it against finite differences.
- `Workspace`: the same forward/backward pass writing into buffers preallocated once per fit, which is
  what the training loop runs thousands of times per epoch. Tests check the two agree.
"""

from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from src.nn.arrays import FloatArray, Labels, Params
from src.nn.rows import BatchLoader, PixelRows, chunk_rows

PARAM_NAMES = ("W1", "b1", "W2", "b2")
DECAYED = ("W1", "W2")
EVAL_CHUNK = 2048  # rows per forward pass when evaluating a whole split (its temporaries ~6 MB at H=256)


def init_params(
    input_dim: int,
    hidden_size: int,
    num_classes: int,
    rng: np.random.Generator,
    dtype: DTypeLike = np.float64,
    scheme: str = "assignment",
) -> Params:
    """Initial weights: the assignment's W1 ~ N(0, 2/(d+H)), W2 ~ N(0, 4/(H+k)); biases zero."""
    d, H, k = input_dim, hidden_size, num_classes
    variances = {
        "assignment": (2 / (d + H), 4 / (H + k)),
        "he": (2 / d, 2 / H),
        "glorot": (2 / (d + H), 2 / (H + k)),
    }[scheme]
    return {
        "W1": (rng.standard_normal((d, H)) * np.sqrt(variances[0])).astype(dtype),
        "b1": np.zeros(H, dtype=dtype),
        "W2": (rng.standard_normal((H, k)) * np.sqrt(variances[1])).astype(dtype),
        "b2": np.zeros(k, dtype=dtype),
    }


def log_softmax(z: FloatArray) -> FloatArray:
    """log(softmax(z)) row-wise, computed as z - max - log(sum(exp(z - max))): never log(0)."""
    shifted = z - z.max(axis=1, keepdims=True)
    result: FloatArray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return result


def softmax(z: FloatArray) -> FloatArray:
    """Row-wise softmax, stable for any finite logits (the row max is subtracted before exp)."""
    shifted = np.exp(z - z.max(axis=1, keepdims=True))
    result: FloatArray = shifted / shifted.sum(axis=1, keepdims=True)
    return result


def _targets(y: NDArray[Any], num_classes: int, dtype: DTypeLike) -> FloatArray:
    """One-hot rows for integer labels; rows of (one-hot or soft) targets pass through."""
    if y.ndim == 2:
        return y.astype(dtype, copy=False)
    onehot = np.zeros((len(y), num_classes), dtype=dtype)
    onehot[np.arange(len(y)), y] = 1
    return onehot


def decay_penalty(params: Params, decay: float) -> float:
    """decay * (||W1||^2 + ||W2||^2), the assignment's weight-decay term."""
    if decay == 0:
        return 0.0
    return decay * sum(float(np.vdot(params[name], params[name])) for name in DECAYED)


def forward(params: Params, X: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Logits z and hidden activations h (what the backward pass needs)."""
    h = np.maximum(X @ params["W1"] + params["b1"], 0)  # (n, d) @ (d, H) -> (n, H)
    z = h @ params["W2"] + params["b2"]  # (n, H) @ (H, k) -> (n, k)
    return z, h


def cost_grad(params: Params, X: FloatArray, y: NDArray[Any], decay: float) -> tuple[float, Params]:
    """The cost and its gradient with respect to W1, b1, W2, b2.

    y holds integer labels 0..k-1 or rows of one-hot targets.
    """
    n = len(X)
    z, h = forward(params, X)
    Y = _targets(y, z.shape[1], z.dtype)
    cost = -float(np.sum(Y * log_softmax(z))) / n + decay_penalty(params, decay)
    dz = (softmax(z) - Y) / n  # dL/dz of the mean cross-entropy, (n, k)
    dh = (dz @ params["W2"].T) * (h > 0)  # (n, k) @ (k, H) -> (n, H), through the ReLU
    grads = {
        "W1": X.T @ dh + 2 * decay * params["W1"],  # (d, n) @ (n, H) -> (d, H)
        "b1": dh.sum(axis=0),
        "W2": h.T @ dz + 2 * decay * params["W2"],  # (H, n) @ (n, k) -> (H, k)
        "b2": dz.sum(axis=0),
    }
    return cost, grads


def evaluate(params: Params, X: FloatArray | PixelRows, y: Labels, decay: float) -> tuple[float, float]:
    """(cost, accuracy) over a whole split, in chunks so memory stays bounded (pixel rows scaled a chunk at
    a time)."""
    dtype = params["W1"].dtype
    total_ce, correct = 0.0, 0
    for start in range(0, len(X), EVAL_CHUNK):
        X_chunk = chunk_rows(X, start, start + EVAL_CHUNK, dtype)
        y_chunk = y[start : start + EVAL_CHUNK]
        z, _ = forward(params, X_chunk)
        total_ce -= float(log_softmax(z)[np.arange(len(y_chunk)), y_chunk].sum())
        correct += int(np.count_nonzero(z.argmax(axis=1) == y_chunk))
    return total_ce / len(X) + decay_penalty(params, decay), correct / len(X)


def predict(params: Params, X: FloatArray | PixelRows) -> Labels:
    """Predicted class for every row of X."""
    dtype = params["W1"].dtype
    chunks = [
        forward(params, chunk_rows(X, start, start + EVAL_CHUNK, dtype))[0].argmax(axis=1)
        for start in range(0, len(X), EVAL_CHUNK)
    ]
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)


def all_finite(params: Params) -> bool:
    return all(bool(np.isfinite(params[name]).all()) for name in PARAM_NAMES)


class Workspace:
    """Buffers for one minibatch's forward and backward pass, allocated once and reused every step.

    `data_cost_grad` computes the mean cross-entropy part of the cost and its gradient into `grads`;
    the weight-decay part is left to the optimizer, which folds it into the update.
    """

    def __init__(self, params: Params, batch_size: int):
        (d, H), k = params["W1"].shape, params["W2"].shape[1]
        dtype = params["W1"].dtype
        self.X = np.empty((batch_size, d), dtype=dtype)
        self.loader = BatchLoader(self.X)
        self.h = np.empty((batch_size, H), dtype=dtype)
        self.active = np.empty((batch_size, H), dtype=bool)
        self.dh = np.empty((batch_size, H), dtype=dtype)
        self.z = np.empty((batch_size, k), dtype=dtype)
        self.row_max = np.empty((batch_size, 1), dtype=dtype)
        self.row_sum = np.empty((batch_size, 1), dtype=dtype)
        self.rows = np.arange(batch_size)
        self.grads = {name: np.empty_like(value) for name, value in params.items()}

    def load_batch(self, X: FloatArray | PixelRows, index: NDArray[np.intp]) -> FloatArray:
        """Gather rows X[index] into the batch buffer as the net's floats (no copy of the whole dataset)."""
        return self.loader.load(X, index)

    def data_cost_grad(self, params: Params, X: FloatArray, y: Labels, grad_scale: float = 1.0) -> tuple[float, int]:
        """Mean cross-entropy of the batch and the number it classified right; fills `self.grads`.

        The gradients come out multiplied by `grad_scale`: plain SGD passes its learning rate, so the
        scaling costs one pass over the small (n, k) output gradient instead of one over every weight.
        """
        n = len(X)
        h, z, dh, active = self.h[:n], self.z[:n], self.dh[:n], self.active[:n]
        row_max, row_sum, rows, g = self.row_max[:n], self.row_sum[:n], self.rows[:n], self.grads

        np.matmul(X, params["W1"], out=h)  # (n, d) @ (d, H) -> (n, H)
        h += params["b1"]
        np.maximum(h, 0, out=h)
        np.matmul(h, params["W2"], out=z)  # (n, H) @ (H, k) -> (n, k)
        z += params["b2"]

        correct = int(np.count_nonzero(z.argmax(axis=1) == y))
        np.amax(z, axis=1, keepdims=True, out=row_max)
        z -= row_max  # shifted logits: exp cannot overflow
        picked = z[rows, y]  # shifted logit of the true class
        np.exp(z, out=z)
        np.sum(z, axis=1, keepdims=True, out=row_sum)
        mean_ce = float(np.log(row_sum).sum() - picked.sum()) / n  # -log softmax(z)_y
        z /= row_sum  # softmax(z)
        z[rows, y] -= 1  # dL/dz = softmax(z) - y
        z *= grad_scale / n  # of the mean over the batch

        np.matmul(h.T, z, out=g["W2"])  # (H, n) @ (n, k) -> (H, k)
        np.sum(z, axis=0, out=g["b2"])
        np.matmul(z, params["W2"].T, out=dh)  # (n, k) @ (k, H) -> (n, H)
        np.greater(h, 0, out=active)
        dh *= active  # through the ReLU
        np.matmul(X.T, dh, out=g["W1"])  # (d, n) @ (n, H) -> (d, H)
        np.sum(dh, axis=0, out=g["b1"])
        return mean_ce, correct
