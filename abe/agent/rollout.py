"""Collects on-policy experience: n_steps x num_envs transitions in preallocated arrays.

One batched actor forward pass per vector step and plain numpy arrays, time-major
(step, env), instead of Tianshou's Collector and buffer, which build several Python
objects per step (bench/throughput.py runs both side by side).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from abe.agent.agent import Agent
from abe.core.fast import inference_forward, sample_gaussian
from abe.envs.envpool import EnvPoolVectorEnv
from abe.envs.vector import SteppedInTurn, final_observations


@dataclass
class RolloutBatch:
    """One rollout, arrays of shape (n_steps, num_envs, ...)."""

    obs: np.ndarray  # normalised observations the actions were chosen on
    act: np.ndarray  # the sampled Gaussian actions, before clipping to the env's bounds
    rew: np.ndarray
    terminated: np.ndarray  # episode ended for good: no bootstrap
    truncated: np.ndarray  # time limit: bootstrap from V(obs_next)
    obs_next: np.ndarray  # normalised real next observations (the last one of an episode too)
    valid: np.ndarray  # False for an autoreset step (EnvPool): not a transition to learn from

    @classmethod
    def empty(cls, n_steps: int, num_envs: int, obs_dim: int, act_dim: int) -> RolloutBatch:
        shape = (n_steps, num_envs)
        return cls(
            obs=np.zeros((*shape, obs_dim), np.float32),
            act=np.zeros((*shape, act_dim), np.float32),
            rew=np.zeros(shape),
            terminated=np.zeros(shape, bool),
            truncated=np.zeros(shape, bool),
            obs_next=np.zeros((*shape, obs_dim), np.float32),
            valid=np.ones(shape, bool),
        )


class Rollout:
    """Steps the training envs and fills a RolloutBatch per call of `collect`."""

    def __init__(self, agent: Agent, envs, n_steps: int, seed: int):
        self.agent, self.envs, self.n_steps = agent, envs, n_steps
        self.stepper = envs if isinstance(envs, EnvPoolVectorEnv) else SteppedInTurn(envs)
        num_envs = envs.num_envs
        # Gymnasium's SAME_STEP envs return the first obs of the next episode at once;
        # EnvPool (NEXT_STEP) returns it one step later, a step whose action is ignored.
        self.next_step_reset = envs.metadata.get("autoreset_mode") == gym.vector.AutoresetMode.NEXT_STEP
        obs_dim = int(np.prod(envs.single_observation_space.shape))
        act_dim = int(np.prod(envs.single_action_space.shape))
        self.batch = RolloutBatch.empty(n_steps, num_envs, obs_dim, act_dim)
        self.raw_obs = np.zeros((n_steps, num_envs, obs_dim))  # for the normaliser's statistics
        obs, _ = envs.reset(seed=[seed + i for i in range(num_envs)])
        agent.normalizer.update(obs)
        self.obs = agent.normalizer.normalize(obs)
        self.episode_return = np.zeros(num_envs)
        self.resetting = np.zeros(num_envs, bool)  # NEXT_STEP: these envs reset on the next step

    def snapshot(self) -> dict:
        """The rollout's position: current observations, partial returns, env states."""
        envs = self.envs.get_attr("snapshot")
        return {
            "obs": torch.from_numpy(self.obs.copy()),
            "episode_return": torch.from_numpy(self.episode_return.copy()),
            "envs": None if any(e is None for e in envs) else [_tensors(e) for e in envs],
        }

    def restore(self, snapshot: dict) -> bool:
        """Continue where `snapshot` stopped; False if it holds no env states."""
        if snapshot["envs"] is None:
            return False  # the envs start new episodes: keep their fresh observations
        self.obs = snapshot["obs"].numpy().copy()
        self.episode_return = snapshot["episode_return"].numpy().copy()
        self.envs.set_attr("snapshot", [_arrays(e) for e in snapshot["envs"]])
        return True

    @torch.no_grad()
    def collect(self) -> list[float]:
        """Fill `self.batch`; return the returns of the episodes that ended meanwhile.

        The envs come in groups (two EnvPool pools, or one Gymnasium vector env): as soon
        as a group's step is back, its next actions go out, and it steps while the
        other group's results are stored and its actions chosen.

        Observations are normalised with the statistics from before this rollout; the
        statistics take in the rollout's observations at its end (once, not per step:
        one normalisation for the whole batch, at a fraction of the per-step cost).
        """
        agent, batch, envs, finished = self.agent, self.batch, self.stepper, []
        normalize, device = agent.normalizer.frozen(), agent.actor.device
        mean_net = inference_forward(agent.actor.mean_net)
        std = agent.actor.std()  # the same for every step until the next update

        def act(t: int, k: int, group: slice) -> None:
            mean = mean_net(torch.as_tensor(self.obs[group], device=device))
            action = sample_gaussian(mean, std).cpu().numpy()  # step by step: one random stream
            batch.obs[t, group], batch.act[t, group] = self.obs[group], action
            envs.send(k, agent.actions.to_env(action))

        for k, group in enumerate(envs.groups):
            act(0, k, group)
        for t in range(self.n_steps):
            for k, group in enumerate(envs.groups):
                finished += self._record(t, group, envs.recv(k), normalize)
                if t + 1 < self.n_steps:
                    act(t + 1, k, group)
        agent.normalizer.update(self.raw_obs.reshape(-1, self.raw_obs.shape[-1]))
        return finished

    def _record(self, t: int, group: slice, step: tuple, normalize) -> list[float]:
        """Store one group's step at time t; return the returns of episodes that ended."""
        batch = self.batch
        next_obs, reward, terminated, truncated, info = step
        done = terminated | truncated
        real_next = next_obs if self.next_step_reset else final_observations(next_obs, done, info)
        batch.rew[t, group], batch.terminated[t, group], batch.truncated[t, group] = reward, terminated, truncated
        batch.obs_next[t, group] = normalize(real_next)
        batch.valid[t, group] = ~self.resetting[group]
        self.raw_obs[t, group] = next_obs
        if self.next_step_reset:
            self.resetting[group] = done
        returns = self.episode_return[group]  # a view: updated in place
        returns += reward
        finished = returns[done].tolist()
        returns[done] = 0.0
        self.obs[group] = batch.obs_next[t, group] if real_next is next_obs else normalize(next_obs)
        return finished


def _tensors(state: dict) -> dict:
    """numpy arrays -> tensors: weights-only checkpoint loading accepts tensors only."""
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}


def _arrays(state: dict) -> dict:
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
