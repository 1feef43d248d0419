"""The random generators a run draws from, seeded and saved for an exact resume."""

from __future__ import annotations

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    np.random.seed(seed)  # Tianshou shuffles batches with numpy's global RNG
    torch.manual_seed(seed)


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
