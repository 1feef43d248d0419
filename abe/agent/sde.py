"""gSDE's exploration noise during a rollout (Raffin et al. 2021, as SB3 implements it).

With `network.sde`, each env explores with a matrix E of N(0, std^2) entries (std: the
actor's (latent, action) matrix): its action is mean(s) + latent(s) @ E. E is drawn at the
start of every rollout and again every `algo.sde_sample_freq` env steps, so an env keeps
one smooth exploration direction for a while instead of fresh noise at every step. The
draws come from the member's generator: a seed's run is the same whichever seeds train
beside it, and resuming at a checkpoint (always between rollouts) draws what the
uninterrupted run drew.
"""

from __future__ import annotations

import torch

from abe.agent.networks import GaussianActor


class StateDependentNoise:
    def __init__(self, actor: GaussianActor, num_envs: int, sample_freq: int, generator: torch.Generator | None):
        self.actor, self.num_envs, self.sample_freq, self.generator = actor, num_envs, sample_freq, generator
        self.matrices: torch.Tensor | None = None  # (num_envs, latent, action)

    def draw(self) -> None:
        std = self.actor.std()
        noise = torch.randn((self.num_envs, *std.shape), generator=self.generator, dtype=std.dtype, device=std.device)
        self.matrices = noise * std

    def due(self, t: int) -> bool:
        """New matrices at step t of a rollout (its start draws them anyway)."""
        return self.sample_freq > 0 and t > 0 and t % self.sample_freq == 0

    def perturbation(self, latent: torch.Tensor, group) -> torch.Tensor:
        """latent @ E for the envs of `group`, one row each."""
        return torch.bmm(latent.unsqueeze(1), self.matrices[group]).squeeze(1)
