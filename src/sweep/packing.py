"""Which configs of a sweep train together as one pack (`hydra.launcher.pack`), and how many at once.

Configs can share one stacked computation (src/nn/pack.py) when they train the same net on the same data
in the same loop: the same data and seed (the seed splits the data), epochs, stopping rules, threads,
hidden size, dtype, optimizer kind, Nesterov or not, batch size and learning-rate schedule. What they may
differ in is what the pack holds per config: the learning rate, the decay, momentum and Adam's settings,
the initialisation.

`pack=1` trains every config alone (the default); `pack=K` packs at most K; `pack=auto` spreads each group
of configs that can share a pack evenly over the workers (one pack per worker: every worker busy, start-up
and data paid once per pack) on the CPU, and puts it in one pack on a GPU (`arrays=torch|cupy`: a small
net is launch-bound there, so the bigger the pack the better), at most AUTO_MAX configs per pack.
"""

from __future__ import annotations

import json
import math

from omegaconf import DictConfig, OmegaConf

from src.sweep.plan import Job

GPU_LIBRARIES = ("torch", "cupy")  # `arrays=` on a GPU, where one big pack is where the speed is
AUTO_MAX = 64  # configs per pack at most with pack=auto (a pack's memory grows with it)
SHARED = (  # what every config of a pack has in common (see the module docstring)
    "seed",
    "epochs",
    "divergence_factor",
    "patience",
    "threads",
    "model.hidden_size",
    "model.dtype",
    "optimizer.name",
    "optimizer.nesterov",
    "optimizer.batch_size",
    "optimizer.schedule",
    "optimizer.lr_final",
    "arrays",
    "device",
)


def pack_key(config: DictConfig) -> str:
    """What a config has to have in common with the others of its pack, as text."""
    shared = {key: OmegaConf.select(config, key, default=None) for key in SHARED}
    shared["data"] = OmegaConf.to_container(config.data, resolve=True)
    return json.dumps(shared, sort_keys=True, default=str)


def packs(jobs: list[Job], size: int | None, workers: int) -> list[list[Job]]:
    """`jobs` in packs of at most `size` (None: auto, for `workers` workers) of configs that can share one;
    the packs in the order of their first job, each pack's jobs in their own order."""
    if size == 1:
        return [[job] for job in jobs]
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(pack_key(job.config), []).append(job)
    found: list[list[Job]] = []
    for group in groups.values():
        on_gpu = OmegaConf.select(group[0].config, "arrays", default=None) in GPU_LIBRARIES
        share = len(group) if on_gpu else math.ceil(len(group) / max(1, workers))  # a GPU: one pack takes all
        k = size or min(AUTO_MAX, share)
        found.extend(group[start : start + k] for start in range(0, len(group), k))
    return sorted(found, key=lambda pack: pack[0].index)
