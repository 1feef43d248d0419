"""Builds the continuous A2C agent: abe's networks inside Tianshou 2.x's A2C."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm import A2C
from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
from tianshou.algorithm.optim import TorchOptimizerFactory

from abe.agent.actions import ActionScaling
from abe.agent.networks import Critic, GaussianActor, ObservationNormalizer, build_mlp, orthogonal_init
from abe.agent.optimizers import optimizer_kwargs
from abe.core.compat import torch_optimizer
from abe.core.schema import Config


def gaussian(loc_scale: tuple[torch.Tensor, torch.Tensor]) -> torch.distributions.Distribution:
    """A diagonal Gaussian whose log-prob sums over action dimensions.

    Without torch's argument checks (on by default: scans of loc, scale and the actions
    at each call): a non-finite loc shows up as a non-finite loss, which the training
    loop reports as divergence."""
    loc, scale = loc_scale
    normal = torch.distributions.Normal(loc, scale, validate_args=False)
    return torch.distributions.Independent(normal, 1, validate_args=False)


@dataclass
class Agent:
    """Everything that learns or is saved: the algorithm (policy, critic, optimizer)
    and the observation statistics the policy was trained on; plus how actions reach
    the env and the one update setting Tianshou's A2C has no field for."""

    algorithm: A2C
    normalizer: ObservationNormalizer
    actions: ActionScaling
    normalize_advantage: bool  # per update, to mean 0 and std 1 (not in Tianshou's A2C)
    sde_sample_freq: int = -1  # gSDE: new noise matrices every this many env steps (-1: once per rollout)
    # Return scaling's std from each env's running discounted reward sum (algo.return_std_from=rewards):
    # the sums, carried from rollout to rollout; None: from the updates' returns, as Tianshou does.
    reward_sums: np.ndarray | None = None

    @property
    def policy(self) -> ProbabilisticActorPolicy:
        return self.algorithm.policy

    @property
    def actor(self) -> GaussianActor:
        return self.algorithm.policy.actor

    @property
    def critic(self) -> Critic:
        return self.algorithm.critic

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return torch_optimizer(self.algorithm)


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def build_agent(cfg: Config, observation_space: gym.spaces.Box, action_space: gym.spaces.Box) -> Agent:
    obs_dim = int(np.prod(observation_space.shape))
    act_dim = int(np.prod(action_space.shape))
    net = cfg.network
    device = resolve_device(cfg.trainer.device)

    def mlp(out_dim: int) -> torch.nn.Sequential:
        return build_mlp(obs_dim, out_dim, net.width, net.depth, net.activation, net.layer_norm)

    mean_net, value_net = mlp(act_dim), mlp(1)
    if net.ortho_init:
        orthogonal_init(mean_net, output_gain=0.01)
        orthogonal_init(value_net, output_gain=1.0)
    actor = GaussianActor(mean_net, act_dim, net.log_std_init, device, sde=net.sde).to(device)
    critic = Critic(value_net, device).to(device)

    policy = ProbabilisticActorPolicy(
        actor=actor,
        dist_fn=gaussian,
        action_space=action_space,
        observation_space=observation_space,
        # Unbounded Gaussian actions; the env's copy is clipped and scaled (ActionScaling).
        action_scaling=True,
        action_bound_method="clip",
        deterministic_eval=True,
    )
    optim_class, optim_kwargs = optimizer_kwargs(cfg.optimizer, cfg.lr)
    algorithm = A2C(
        policy=policy,
        critic=critic,
        optim=TorchOptimizerFactory(optim_class, **optim_kwargs),
        vf_coef=cfg.algo.vf_coef,
        ent_coef=cfg.algo.ent_coef,
        max_grad_norm=cfg.algo.max_grad_norm,
        gae_lambda=cfg.algo.gae_lambda,
        max_batchsize=cfg.algo.n_steps * cfg.trainer.num_envs,  # GAE in one pass
        gamma=cfg.gamma,
        return_scaling=cfg.algo.return_scaling,
    )
    return Agent(
        algorithm=algorithm,
        normalizer=ObservationNormalizer(obs_dim, enabled=cfg.algo.normalize_obs),
        actions=ActionScaling(action_space.low, action_space.high),
        normalize_advantage=cfg.algo.normalize_advantage,
        sde_sample_freq=cfg.algo.sde_sample_freq,
        reward_sums=np.zeros(cfg.trainer.num_envs) if cfg.algo.return_std_from == "rewards" else None,
    )
