"""The assignment's net for K configs at once: every parameter has a leading config axis and every product is
a batched matmul, written against the array API standard so any backend (src/nn/backend.py) runs it.

A pack's parameters: W1 (K, d, H), b1 (K, 1, H), W2 (K, H, k), b2 (K, 1, k). Config k's slice computes
exactly what `mlp.Workspace` and `mlp.evaluate` compute for it alone, operation for operation (the same
products, the same reductions over the same axes, the same float64 conversions), so on NumPy a config gives
the same bits in a pack as alone: each slice of a batched matmul is the same BLAS call as the unbatched
product. Each config trains on its own batch (its own shuffling), so a batch is (K, n, d).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from src.nn.arrays import Array, PackedParams, Params
from src.nn.backend import Backend, namespace, to_numpy
from src.nn.mlp import DECAYED, EVAL_CHUNK, PARAM_NAMES
from src.nn.rows import PixelRows, chunk_rows

EVAL_ELEMENTS = 1 << 24  # hidden activations held at once when evaluating (configs x rows x H), 64 MiB in float32


def pack_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape one config's array takes in a pack, without the config axis: a bias (H,) is a row (1, H)
    so that it broadcasts over each config's batch."""
    return (1, *shape) if len(shape) == 1 else shape


def stack(arrays: Sequence[np.ndarray], backend: Backend) -> Array:
    """One config's arrays of one name, stacked along a new leading axis, on the backend's device."""
    return backend.asarray(np.stack([np.asarray(a).reshape(pack_shape(a.shape)) for a in arrays]))


def stack_params(members: Sequence[Params], backend: Backend) -> PackedParams:
    """K configs' parameters as one pack's (the configs' own arrays are not modified)."""
    return {name: stack([params[name] for params in members], backend) for name in members[0]}


def unstack(packed: dict[str, Array], shapes: dict[str, tuple[int, ...]]) -> list[dict[str, np.ndarray]]:
    """Host copies of every config's arrays, one dict per config, each array in its unpacked `shapes`."""
    host = {name: to_numpy(packed[name]) for name in shapes}
    count = len(next(iter(host.values()))) if host else 0
    return [{name: np.array(host[name][k]).reshape(shape) for name, shape in shapes.items()} for k in range(count)]


def select(packed: dict[str, Array], keep: Array) -> dict[str, Array]:
    """The configs at positions `keep` (an index array on the pack's device), in that order."""
    return {name: namespace(value).take(value, keep, axis=0) for name, value in packed.items()}


_ZEROS: dict[tuple[type, str, str], Array] = {}


def zero(like: Array) -> Array:
    """A 0-d zero of `like`'s dtype on its device, made once per library, dtype and device: PyTorch would
    copy a Python 0 to the GPU (and wait for it) at every `maximum`."""
    key = (type(like), str(like.dtype), str(Backend.of(like).device))
    if key not in _ZEROS:
        _ZEROS[key] = namespace(like).zeros((), dtype=like.dtype, device=Backend.of(like).device)
    return _ZEROS[key]


@dataclass(frozen=True)
class Batch:
    """One step's rows for each config of a pack."""

    X: Array  # (K, n, d) pixel rows
    y: Array  # (K, n, 1) labels 0..k-1 (int64)
    targets: Array  # (K, n, k) their one-hot rows, in the parameters' dtype


def data_cost_grad(params: PackedParams, batch: Batch, scale: Array) -> tuple[Array, Array, PackedParams]:
    """Each config's mean cross-entropy over its batch (float64, (K,)), how many it classified right
    ((K,) int64), and the gradient of that mean times `scale` ((K, 1, 1): the optimizer's `grad_scale` / n).

    The weight-decay part of the cost is left to the optimizer, as in `mlp.Workspace.data_cost_grad`, whose
    every operation this repeats per slice.
    """
    xp = namespace(batch.X)
    K, n = batch.X.shape[:2]
    h = xp.matmul(batch.X, params["W1"])  # (K, n, d) @ (K, d, H) -> (K, n, H)
    h += params["b1"]
    h = xp.maximum(h, zero(h))
    z = xp.matmul(h, params["W2"])  # (K, n, H) @ (K, H, k) -> (K, n, k)
    z += params["b2"]

    correct = xp.count_nonzero(xp.argmax(z, axis=-1) == xp.reshape(batch.y, (K, n)), axis=-1)
    z -= xp.max(z, axis=-1, keepdims=True)  # shifted logits: exp cannot overflow
    picked = xp.take_along_axis(z, batch.y, axis=-1)  # shifted logit of the true class
    z = xp.exp(z)
    row_sum = xp.sum(z, axis=-1, keepdims=True)
    ce_sum = xp.sum(xp.reshape(xp.log(row_sum), (K, n)), axis=-1) - xp.sum(xp.reshape(picked, (K, n)), axis=-1)
    mean_ce = xp.astype(ce_sum, xp.float64) / n  # -log softmax(z)_y, as mlp.Workspace converts it
    z /= row_sum  # softmax(z)
    z -= batch.targets  # dL/dz = softmax(z) - y
    z *= scale  # of the mean over the batch, times the optimizer's grad_scale

    grads = {
        "W2": xp.matmul(xp.matrix_transpose(h), z),  # (K, H, n) @ (K, n, k) -> (K, H, k)
        "b2": xp.sum(z, axis=1, keepdims=True),
    }
    dh = xp.matmul(z, xp.matrix_transpose(params["W2"]))  # (K, n, k) @ (K, k, H) -> (K, n, H)
    dh *= xp.astype(h > 0, dh.dtype)  # through the ReLU (a product, as NumPy multiplies by a bool mask)
    grads["W1"] = xp.matmul(xp.matrix_transpose(batch.X), dh)  # (K, d, n) @ (K, n, H) -> (K, d, H)
    grads["b1"] = xp.sum(dh, axis=1, keepdims=True)
    return mean_ce, correct, grads


def squared_norms(params: PackedParams) -> Array:
    """||W1||^2 + ||W2||^2 of each config, in float64 ((K,)), summed as `mlp.decay_penalty` sums them."""
    xp = namespace(params["W1"])
    total = None
    for name in DECAYED:
        flat = xp.reshape(params[name], (params[name].shape[0], -1))
        norm = xp.astype(xp.vecdot(flat, flat), xp.float64)  # (K, m) . (K, m) -> (K,)
        total = norm if total is None else total + norm
    return total


def penalties(params: PackedParams, decay: Array) -> Array:
    """decay * (||W1||^2 + ||W2||^2) per config ((K,) float64); exactly 0 where the decay is 0."""
    xp = namespace(params["W1"])
    return xp.where(decay == 0, 0.0, decay * squared_norms(params))


def all_finite(params: PackedParams) -> Array:
    """Whether every parameter of each config is finite ((K,) bool)."""
    xp = namespace(params["W1"])
    finite = None
    for name in PARAM_NAMES:
        ok = xp.all(xp.isfinite(params[name]), axis=(1, 2))
        finite = ok if finite is None else xp.logical_and(finite, ok)
    return finite


def _chunk_scores(params: PackedParams, X: Array, y: Array) -> tuple[Array, Array]:
    """(sum of log softmax(z)_y in the parameters' dtype, correct count) per config over the rows X (n, d)."""
    xp = namespace(X)
    K, n = params["W1"].shape[0], X.shape[0]
    h = xp.matmul(X, params["W1"]) + params["b1"]  # (n, d) @ (K, d, H) -> (K, n, H)
    h = xp.maximum(h, zero(h))
    z = xp.matmul(h, params["W2"]) + params["b2"]  # (K, n, H) @ (K, H, k) -> (K, n, k)
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    log_p = shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))  # log softmax, as mlp.log_softmax
    labels = xp.broadcast_to(xp.reshape(y, (1, n)), (K, n))
    picked = xp.take_along_axis(log_p, xp.expand_dims(labels, axis=-1), axis=-1)  # (K, n, 1)
    correct = xp.count_nonzero(xp.argmax(z, axis=-1) == labels, axis=-1)
    return xp.sum(xp.reshape(picked, (K, n)), axis=-1), correct


def evaluate(params: PackedParams, X: "Array | PixelRows", y: Array) -> tuple[np.ndarray, np.ndarray]:
    """Each config's (cross-entropy, accuracy) over the whole split X (N, d), y (N,), as host arrays.

    Rows go in chunks of `mlp.EVAL_CHUNK`, the chunks' sums added in float64 as `mlp.evaluate` adds them, so
    a config's scores are those of `mlp.evaluate(..., decay=0)`; configs go in groups so that memory stays
    bounded. Pixel rows are scaled a chunk at a time."""
    stored = X.stored if isinstance(X, PixelRows) else X
    xp, dtype = namespace(stored), params["W1"].dtype
    K, N, H = params["W1"].shape[0], stored.shape[0], params["W1"].shape[2]
    group = max(1, EVAL_ELEMENTS // (min(N, EVAL_CHUNK) * H))
    ce_parts, correct_parts = [], []
    for first in range(0, K, group):
        last = min(first + group, K)  # slices stay within the array (the standard leaves beyond unspecified)
        part = {name: value[first:last, ...] for name, value in params.items()}
        total_ce = xp.zeros(part["W1"].shape[0], dtype=xp.float64, device=Backend.of(stored).device)
        correct = None
        for start in range(0, N, EVAL_CHUNK):
            stop = min(start + EVAL_CHUNK, N)
            log_p_sum, right = _chunk_scores(part, chunk_rows(X, start, stop, dtype), y[start:stop])
            total_ce = total_ce - xp.astype(log_p_sum, xp.float64)  # as mlp.evaluate's total_ce -= float(...)
            correct = right if correct is None else correct + right
        ce_parts.append(to_numpy(total_ce))
        correct_parts.append(to_numpy(correct))
    # + 0.0: mlp.evaluate adds decay_penalty(params, 0.0), which turns a -0.0 into 0.0
    return np.concatenate(ce_parts) / N + 0.0, np.concatenate(correct_parts) / N
