"""Runs a policy for whole episodes, all of them side by side in one vector env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from abe.agent import Agent

EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes never start where training ones do


@torch.no_grad()
def act(agent: Agent, raw_obs: np.ndarray, deterministic: bool) -> np.ndarray:
    """Env-ready actions for raw observations: normalise, actor, mean or sample, clip+scale."""
    (mean, std), _ = agent.actor(agent.normalizer.normalize(raw_obs))
    action = mean if deterministic else agent.policy.dist_fn((mean, std)).sample()
    return agent.policy.map_action(action.cpu().numpy())


def evaluate(
    agent: Agent, envs: gym.vector.VectorEnv, seed: int, deterministic: bool = True
) -> np.ndarray:
    """One episode per sub-env, from the same seeded start states every time.

    Returns the undiscounted episode returns, shape (envs.num_envs,).
    """
    obs, _ = envs.reset(seed=[seed + EVAL_SEED_OFFSET + i for i in range(envs.num_envs)])
    returns = np.zeros(envs.num_envs)
    running = np.ones(envs.num_envs, dtype=bool)
    while running.any():
        obs, reward, terminated, truncated, _ = envs.step(act(agent, obs, deterministic))
        returns += reward * running
        running &= ~(terminated | truncated)
    return returns


def random_policy_returns(envs: gym.vector.VectorEnv, seed: int) -> np.ndarray:
    """The baseline a trained agent must beat: uniform random actions, same start states."""
    envs.reset(seed=[seed + EVAL_SEED_OFFSET + i for i in range(envs.num_envs)])
    envs.action_space.seed(seed)
    returns = np.zeros(envs.num_envs)
    running = np.ones(envs.num_envs, dtype=bool)
    while running.any():
        _, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
        returns += reward * running
        running &= ~(terminated | truncated)
    return returns
