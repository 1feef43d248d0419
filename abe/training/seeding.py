"""The random generators a run draws from, seeded and saved for an exact resume."""

from __future__ import annotations

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    np.random.seed(seed)  # Tianshou shuffles batches with numpy's global RNG
    torch.manual_seed(seed)


def rng_state(generator: torch.Generator) -> dict:
    """`generator` (a member's action noise) and numpy's global state, as tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": generator.get_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    """What `rng_state` saved. (Checkpoints made before K-seed jobs saved torch's global
    state here, which then held just what a member's generator holds now: the action
    noise's position.)"""
    generator.set_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
