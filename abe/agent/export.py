"""The trained policy as a plain `torch.nn.Sequential` that acts on raw observations.

Only standard torch layers, so `mlflow.pytorch.load_model` works for anyone with torch
installed, without abe: observation normalisation becomes a diagonal Linear layer and
a clamp, the action mapping (clip to [-1, 1], scale to the bounds) a Hardtanh and
another diagonal Linear layer.
"""

from __future__ import annotations

import copy

from torch import nn

from abe.agent.agent import Agent


def deterministic_policy(agent: Agent) -> nn.Sequential:
    """raw observation (batch, obs_dim) -> env action (batch, act_dim), mean action."""
    layers = [*agent.normalizer.as_layers(), copy.deepcopy(agent.actor.mean_net).cpu(), *agent.actions.as_layers()]
    return nn.Sequential(*layers).eval()
