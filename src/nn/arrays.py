"""Names for the arrays the numerics pass around, so every signature in src/nn says what it takes."""

from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.floating[Any]]  # pixel rows, weights, activations, gradients (float32 or float64)
Labels = NDArray[np.integer[Any]]  # class indices 0..k-1, one per row
Params = dict[str, FloatArray]  # W1, b1, W2, b2 (and the gradients or optimizer state of each, by name)
Metrics = dict[str, float]  # one epoch's metrics, by name (EPOCH_METRICS)

# An array of any array-API library (NumPy, CuPy, PyTorch, array-api-strict): the packed numerics' arrays.
# The standard has no static array type that every library's arrays satisfy, hence Any.
Array = Any
PackedParams = dict[str, Array]  # W1 (K, d, H), b1 (K, 1, H), W2 (K, H, k), b2 (K, 1, k): K configs' parameters
