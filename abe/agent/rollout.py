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
import torch.nn.functional as F

from abe.agent.agent import Agent
from abe.agent.sde import StateDependentNoise
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

    def __init__(self, agent: Agent, envs, n_steps: int, seed: int, generator: torch.Generator | None = None):
        self.agent, self.envs, self.n_steps = agent, envs, n_steps
        self.generator = generator  # the action noise's stream; None: torch's global one
        self.sde = (
            StateDependentNoise(agent.actor, envs.num_envs, agent.sde_sample_freq, generator)
            if agent.actor.sde
            else None
        )
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

    def collect(self) -> list[float]:
        """Fill `self.batch`; return the returns of the episodes that ended meanwhile."""
        return collect_together([self])[0]

    def _begin(self) -> None:
        """Freeze what stays fixed for one rollout: the observation statistics, the
        actor's parameters (read through fast calls) and its std."""
        agent = self.agent
        self._normalize, self._device = agent.normalizer.frozen(), agent.actor.device
        self._mean_net = inference_forward(agent.actor.mean_net)
        self._std = agent.actor.std()
        self._finished: list[float] = []
        if self.sde is not None:
            self._latent_net, self._head = inference_forward(agent.actor.mean_net[:-1]), agent.actor.mean_net[-1]
            self.sde.draw()

    def _act(self, t: int, k: int) -> None:
        """Choose group k's actions at time t and send them to its envs."""
        group = self.stepper.groups[k]
        obs = torch.as_tensor(self.obs[group], device=self._device)
        if self.sde is None:
            mean = self._mean_net(obs)
            action = sample_gaussian(mean, self._std, self.generator).cpu().numpy()  # step by step: one stream
        else:
            if k == 0 and self.sde.due(t):
                self.sde.draw()
            latent = self._latent_net(obs)
            mean = F.linear(latent, self._head.weight, self._head.bias)
            action = (mean + self.sde.perturbation(latent, group)).cpu().numpy()
        self.batch.obs[t, group], self.batch.act[t, group] = self.obs[group], action
        self.stepper.send(k, self.agent.actions.to_env(action))

    def _end(self) -> list[float]:
        self.agent.normalizer.update(self.raw_obs.reshape(-1, self.raw_obs.shape[-1]))
        return self._finished

    def _record(self, t: int, k: int) -> None:
        """Wait for group k's step at time t and store it."""
        group, normalize, batch = self.stepper.groups[k], self._normalize, self.batch
        step = self.stepper.recv(k)
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
        self._finished += returns[done].tolist()
        returns[done] = 0.0
        self.obs[group] = batch.obs_next[t, group] if real_next is next_obs else normalize(next_obs)


@torch.no_grad()
def collect_together(rollouts: list[Rollout]) -> list[list[float]]:
    """Fill every rollout's batch, stepping all their envs at once; return, per rollout,
    the returns of the episodes that ended meanwhile.

    The envs come in groups (two EnvPool pools, or one Gymnasium vector env): as soon as
    a rollout's group k is back, its next actions go out, and those envs step while the
    other rollouts' and groups' results are stored and their actions chosen. Each rollout
    draws its actions from its own generator in the order a rollout alone would, so a
    seed trains the same whichever seeds train beside it.

    Observations are normalised with the statistics from before this rollout; the
    statistics take in the rollout's observations at its end (once, not per step).
    """
    n_steps, groups = rollouts[0].n_steps, len(rollouts[0].stepper.groups)
    for rollout in rollouts:
        rollout._begin()
        for k in range(groups):
            rollout._act(0, k)
    for t in range(n_steps):
        for k in range(groups):
            for rollout in rollouts:
                rollout._record(t, k)
                if t + 1 < n_steps:
                    rollout._act(t + 1, k)
    return [rollout._end() for rollout in rollouts]


def _tensors(state: dict) -> dict:
    """numpy arrays -> tensors: weights-only checkpoint loading accepts tensors only."""
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}


def _arrays(state: dict) -> dict:
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
