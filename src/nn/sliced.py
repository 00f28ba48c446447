"""A NumPy pack's training pass, one config at a time: each config's whole epoch by `fit`'s own steps
(`mlp.Workspace` and the config's own `Optimizer`), on views of its slice of the pack's stacked arrays.

On a CPU the batched products of src/nn/packed.py buy nothing at the assignment's sizes (batch 32: each slice
of a batched matmul is the same BLAS call), and K configs stepped in lockstep cycle K sets of weights through
the cache at every step: on Fashion-MNIST (784-256-10), packs of 4 to 48 took 1.2-2.2x a config's time
alone per config. One config's epoch after another keeps one config's weights hot, as `fit` does, and runs
`fit`'s very operations, so each config gets `fit`'s bits by construction. The pack keeps what it is for on the CPU: one
process, one copy of the data, and configs that stand at the same epoch to be compared and halved together.
"""

from dataclasses import dataclass

import numpy as np

from src.nn.arrays import Params
from src.nn.mlp import PARAM_NAMES, Workspace
from src.nn.packed_optim import PackedOptimizer
from src.nn.rows import PixelRows
from src.nn.train import StepHook, batch_cost

# One config's weights at which the sliced pass beats the batched one on the CPU (bench/packs.py measures
# both): digits' 64-256-10 net (19k weights) steps faster batched, where Python's per-step cost dominates;
# Fashion-MNIST's 784-256-10 (204k) one config at a time.
SLICED_FROM_WEIGHTS = 1 << 15


def sliced(params: Params) -> bool:
    """Whether a NumPy pack of this net (one config's `params`) trains one config at a time (see
    SLICED_FROM_WEIGHTS)."""
    return sum(params[name].size for name in PARAM_NAMES) >= SLICED_FROM_WEIGHTS


def views(params: Params, position: int, shapes: dict[str, tuple[int, ...]]) -> Params:
    """The config at `position`'s parameters in their unpacked `shapes`, as views of the pack's arrays."""
    return {name: params[name][position].reshape(shapes[name]) for name in PARAM_NAMES}


@dataclass(frozen=True)
class Stacked:
    """A NumPy pack's state: its stacked parameters and packed optimizer, and one config's shapes."""

    params: Params
    optimizer: PackedOptimizer
    shapes: dict[str, tuple[int, ...]]


def train_epoch(
    pack: Stacked,
    data: tuple[np.ndarray | PixelRows, np.ndarray],
    orders: np.ndarray,
    epoch: int,
    batch_size: int,
    on_step: StepHook | None,
) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the training set (`data`: rows and labels) for each config of the pack in turn, in its
    own order (`orders`, (K, N)): every step's cost of each config ((steps, K)) and how many rows each
    classified right ((K,)), as the batched pass returns them. `on_step(epoch, step)` is called before each
    step of each config."""
    K, N = orders.shape
    starts = range(0, N, batch_size)
    costs = np.zeros((len(starts), K))
    correct = np.zeros(K, dtype=np.int64)
    workspace = Workspace(views(pack.params, 0, pack.shapes), batch_size)  # every config's, one after another
    for position in range(K):
        own = views(pack.params, position, pack.shapes)
        rule = pack.optimizer.alone(position, own)
        order = orders[position]
        for step, start in enumerate(starts):
            if on_step is not None:
                on_step(epoch, step + 1)
            costs[step, position], right = batch_cost(own, workspace, rule, data, order[start : start + batch_size])
            correct[position] += right
            rule.step(own, workspace.grads)
    pack.optimizer.advance(len(starts))
    return costs, correct
