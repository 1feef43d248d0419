"""Runs a policy for whole episodes, all of them side by side in one vector env, and
records an episode as a video."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from abe.agent.agent import Agent

EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes never start where training ones do

PolicyFn = Callable[[np.ndarray], np.ndarray]  # raw observations -> env-ready actions


def agent_policy(agent: Agent, deterministic: bool = True) -> PolicyFn:
    """Normalise, actor, mean (or a sample), clip and scale to the action bounds."""

    normalize = agent.normalizer.frozen()  # the agent does not learn while it is evaluated

    @torch.no_grad()
    def policy(raw_obs: np.ndarray) -> np.ndarray:
        (mean, std), _ = agent.actor(normalize(raw_obs))
        action = mean if deterministic else agent.policy.dist_fn((mean, std)).sample()
        return agent.actions.to_env(action.cpu().numpy())

    return policy


def module_policy(model: torch.nn.Module) -> PolicyFn:
    """An exported policy (abe.export): raw observations in, env actions out."""

    @torch.no_grad()
    def policy(raw_obs: np.ndarray) -> np.ndarray:
        return model(torch.as_tensor(raw_obs, dtype=torch.float32)).numpy()

    return policy


def episode_seeds(seed: int, count: int) -> list[int]:
    return [seed + EVAL_SEED_OFFSET + i for i in range(count)]


def run_episodes(policy: PolicyFn, envs: gym.vector.VectorEnv, seed: int) -> np.ndarray:
    """One episode per sub-env, from the same seeded start states every time.

    Returns the undiscounted episode returns, shape (envs.num_envs,).
    """
    obs, _ = envs.reset(seed=episode_seeds(seed, envs.num_envs))
    returns = np.zeros(envs.num_envs)
    running = np.ones(envs.num_envs, dtype=bool)
    while running.any():
        obs, reward, terminated, truncated, _ = envs.step(policy(obs))
        returns += reward * running
        running &= ~(terminated | truncated)
    return returns


def evaluate(agent: Agent, envs: gym.vector.VectorEnv, seed: int, deterministic: bool = True) -> np.ndarray:
    return run_episodes(agent_policy(agent, deterministic), envs, seed)


def record_video(policy: PolicyFn, env_id: str, env_kwargs: dict, seed: int, path: Path) -> tuple[Path, int, float]:
    """Render the first evaluation episode to an MP4; returns (path, frames, return)."""
    import imageio.v2 as imageio

    from abe.envs.mujoco import make_render_env

    env = make_render_env(env_id, env_kwargs)
    try:
        obs, _ = env.reset(seed=episode_seeds(seed, 1)[0])
        frames, total, done = [env.render()], 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs[None])[0])
            frames.append(env.render())
            total += float(reward)
            done = terminated or truncated
        fps = env.metadata.get("render_fps") or 30
    finally:
        env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)
    return path, len(frames), total
