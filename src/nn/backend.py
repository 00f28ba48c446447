"""Where a pack's arrays live: an array-API namespace and a device, and the two crossings to and from the host.

The packed numerics (src/nn/packed.py, packed_optim.py, pack.py) use only the array API standard through
the namespace `array_namespace` (array-api-compat) gives them, so NumPy, CuPy, PyTorch and array-api-strict
run the same code. The host keeps what must match a CPU run bit for bit (NumPy's Generator for the initial
weights and the shuffling, the per-step schedules); `Backend.asarray` moves arrays to the device once, and
`to_numpy` brings metrics and parameters back.
"""

import importlib
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from src.nn.arrays import Array

# backend name -> the module that is its array-API namespace
_NAMESPACES = {
    "numpy": "array_api_compat.numpy",
    "array_api_strict": "array_api_strict",
    "torch": "array_api_compat.torch",
    "cupy": "array_api_compat.cupy",
}
BACKENDS = tuple(_NAMESPACES)


@dataclass(frozen=True)
class Backend:
    """An array-API namespace `xp` and the device its arrays are made on (None: the namespace's default)."""

    xp: Any
    device: Any = None

    @classmethod
    def of(cls, array: Array) -> "Backend":
        """The namespace and device of `array`: array type in, array type out."""
        return cls(namespace(array), array_api_compat.device(array))

    def asarray(self, array: Array) -> Array:
        """`array` (a NumPy array or one of this namespace's) on this backend's device, dtype kept; NumPy
        arrays on NumPy are not copied."""
        return self.xp.asarray(array, device=self.device)

    @property
    def name(self) -> str:
        return str(self.xp.__name__).removeprefix("array_api_compat.")


def backend(name: str, device: str | None = None) -> Backend:
    """The backend `name` (one of BACKENDS) on `device` ("cpu", "cuda", "cuda:1"; None: the library's
    default). CuPy and PyTorch are optional: `pip install 'netsweep[gpu]'`."""
    if name not in _NAMESPACES:
        raise ValueError(f"unknown array backend {name!r}; use one of {', '.join(BACKENDS)}")
    try:
        xp = importlib.import_module(_NAMESPACES[name])
    except ImportError as missing:
        raise ModuleNotFoundError(f"array backend {name!r} needs {missing.name}: pip install 'netsweep[gpu]'") from None
    if name == "torch":
        import torch  # deferred: an optional library, imported only when asked for

        return Backend(xp, torch.device(device or "cpu"))
    if name == "cupy" and device not in (None, "cuda", "gpu"):
        import cupy  # deferred: an optional library, imported only when asked for

        return Backend(xp, cupy.cuda.Device(int(str(device).rsplit(":", 1)[-1])))
    if name in ("numpy", "array_api_strict") and device not in (None, "cpu"):
        raise ValueError(f"array backend {name!r} runs on the CPU only, not on {device!r}; use torch or cupy")
    return Backend(xp)


_NAMESPACE_OF: dict[type, Any] = {}


def namespace(array: Array) -> Any:
    """`array_namespace(array)` (array-api-compat), looked up once per array type: the lookup costs about
    15 us, a tenth of a small net's step, and the namespace depends on the array's type alone."""
    kind = type(array)
    xp = _NAMESPACE_OF.get(kind)
    if xp is None:
        xp = _NAMESPACE_OF[kind] = array_api_compat.array_namespace(array)
    return xp


NUMPY = Backend(namespace(np.empty(0)))


def to_numpy(array: Array) -> np.ndarray:
    """A host NumPy copy of `array` (NumPy arrays pass through uncopied)."""
    if isinstance(array, np.ndarray | np.generic):
        return np.asarray(array)
    if array_api_compat.is_cupy_array(array):
        return np.asarray(array.get())
    if array_api_compat.is_torch_array(array):
        return np.asarray(array.detach().cpu().numpy())
    return np.from_dlpack(array)  # array-api-strict and other host libraries
