"""Learning-rate schedules: the factor of a config's learning rate that each epoch's steps take.

A schedule anneals the learning rate over the config's `epochs`, from the configured rate at epoch 1 toward
`final` times it (the value it would reach at epoch `epochs` + 1): `cosine` as SGDR's half cosine
(Loshchilov & Hutter, 2017), `linear` in equal steps. The factor is a function of the epoch alone, so a run
continued from a checkpoint, a config paused at a rung and a config trained in a pack take the steps an
unbroken run takes, with the same bits (each optimizer multiplies its configured rate by the factor, a
single rounding: src/nn/optim.py, src/nn/packed_optim.py).
"""

import math

SCHEDULES = ("cosine", "linear")


def lr_factor(schedule: str | None, epoch: int, epochs: int, final: float = 0.0) -> float:
    """The factor of the learning rate for the steps of `epoch` (1-based) of `epochs`: 1 without a
    schedule (None); else from 1 at epoch 1 toward `final` as `schedule` says."""
    if schedule is None:
        return 1.0
    done = (epoch - 1) / epochs  # the share of the training before this epoch
    if schedule == "cosine":
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * done))
    if schedule == "linear":
        return 1 - (1 - final) * done
    raise ValueError(f"unknown learning-rate schedule {schedule!r}: use one of {', '.join(SCHEDULES)}")
