"""The trained policy as a plain ``torch.nn.Sequential`` that acts on raw observations.

Only standard torch layers, so ``mlflow.pytorch.load_model`` works for anyone with
torch installed, without abe: observation normalisation becomes a diagonal Linear
layer and a clamp, and the action mapping (clip to [-1, 1], scale to the bounds)
becomes a Hardtanh and another diagonal Linear layer.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from abe.agent import Agent


def _diagonal_affine(scale: np.ndarray, shift: np.ndarray) -> nn.Linear:
    layer = nn.Linear(len(scale), len(scale))
    with torch.no_grad():
        layer.weight.copy_(torch.diag(torch.as_tensor(scale, dtype=torch.float32)))
        layer.bias.copy_(torch.as_tensor(shift, dtype=torch.float32))
    layer.requires_grad_(False)
    return layer


def deterministic_policy(agent: Agent) -> nn.Sequential:
    """raw observation (batch, obs_dim) -> env action (batch, act_dim), mean action."""
    layers: list[nn.Module] = []
    norm = agent.normalizer
    if norm.enabled:
        std = np.sqrt(norm.var.numpy() + 1e-8)
        layers += [_diagonal_affine(1 / std, -norm.mean.numpy() / std), nn.Hardtanh(-norm.clip, norm.clip)]
    layers.append(copy.deepcopy(agent.actor.mean_net).cpu())
    space = agent.policy.action_space
    layers.append(nn.Hardtanh(-1.0, 1.0))
    half_range = (space.high - space.low) / 2.0
    layers.append(_diagonal_affine(half_range, space.low + half_range))
    return nn.Sequential(*layers).eval()
