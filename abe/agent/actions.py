"""From the policy's actions to the env's: the one implementation of clip and scale."""

from __future__ import annotations

import numpy as np
from torch import nn

from abe.agent.networks import diagonal_affine


class ActionScaling:
    """The policy samples unbounded Gaussian actions and learns from those; the env gets
    them clipped to [-1, 1] and scaled to its bounds [low, high]. (The tutorial clipped
    first and then took log-probabilities of the clipped actions.)

    What Tianshou's `map_action` (action_bound_method="clip", action_scaling=True)
    computes, without its per-call checks, which cost more than the arithmetic at one
    call per vector step."""

    def __init__(self, low: np.ndarray, high: np.ndarray):
        self.low, self.high = low, high

    def to_env(self, action: np.ndarray) -> np.ndarray:
        clipped = np.minimum(np.maximum(action, -1.0), 1.0)  # np.clip costs more on small arrays
        return self.low + (self.high - self.low) * (clipped + 1.0) / 2.0

    def as_layers(self) -> list[nn.Module]:
        """`to_env` as torch layers (float32), for the exported policy."""
        half_range = (self.high - self.low) / 2.0
        return [nn.Hardtanh(-1.0, 1.0), diagonal_affine(half_range, self.low + half_range)]
