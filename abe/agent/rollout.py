"""Collects on-policy experience: n_steps x num_envs transitions in preallocated arrays.

One batched actor forward pass per vector step and plain numpy arrays, time-major
(step, env), instead of Tianshou's Collector and buffer, which build several Python
objects per step (bench/throughput.py runs both side by side).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from abe.agent.agent import Agent
from abe.agent.networks import ObservationNormalizer
from abe.agent.sde import StateDependentNoise
from abe.core.fast import inference_forward, sample_gaussian, stacked_forward_is_exact, stacked_inference_forward
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
    """One seed's training envs and the RolloutBatch they fill per call of `collect`.

    A job of K seeds collects through a RolloutGroup of their K rollouts, which steps
    all their envs at once; a rollout alone is a group of one."""

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
        self._alone: RolloutGroup | None = None

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
        self.obs[...] = snapshot["obs"].numpy()  # in place: a RolloutGroup may hold these arrays
        self.episode_return[...] = snapshot["episode_return"].numpy()
        self.envs.set_attr("snapshot", [_arrays(e) for e in snapshot["envs"]])
        return True

    def collect(self) -> list[float]:
        """Fill `self.batch`; return the returns of the episodes that ended meanwhile."""
        if self._alone is None:
            self._alone = RolloutGroup([self])
        return self._alone.collect()[0]

    def _begin(self) -> None:
        """Freeze what stays fixed for one rollout: the actor's parameters (read through
        fast calls) and its std."""
        agent = self.agent
        self._mean_net = inference_forward(agent.actor.mean_net)
        self._std = agent.actor.std()
        if self.sde is not None:
            self._latent_net, self._head = inference_forward(agent.actor.mean_net[:-1]), agent.actor.mean_net[-1]
            self.sde.draw()

    def _action(self, t: int, k: int, obs: torch.Tensor) -> torch.Tensor:
        """The actions of group k's envs at time t, drawn from this seed's stream."""
        if self.sde is None:
            return sample_gaussian(self._mean_net(obs), self._std, self.generator)  # step by step: one stream
        if k == 0 and self.sde.due(t):
            self.sde.draw()
        latent = self._latent_net(obs)
        mean = F.linear(latent, self._head.weight, self._head.bias)
        return mean + self.sde.perturbation(latent, self.stepper.groups[k])


class RolloutGroup:
    """The rollouts of K seeds, collected together: one call fills every seed's batch.

    The seeds' arrays live in stacked arrays (seed first; each Rollout keeps views of its
    slices), so storing a step, normalising observations and scaling actions take one
    numpy call for all seeds instead of one per seed. Each seed still has its own envs,
    observation statistics, networks and random stream, and every step is elementwise
    per seed or (the stacked forward pass) checked to give each seed its own numbers, so
    a seed fills the same numbers whichever seeds train beside it (tests/unit/test_fast.py,
    test_training.py).
    """

    def __init__(self, rollouts: list[Rollout]):
        self.rollouts, first = rollouts, rollouts[0]
        self.n_steps, self.next_step_reset = first.n_steps, first.next_step_reset
        self.groups = first.stepper.groups  # the same split for every seed (same env and num_envs)
        self.to_env = first.agent.actions.to_env  # the same bounds for every seed
        self.batch = RolloutBatch(
            *(np.stack([getattr(r.batch, f.name) for r in rollouts]) for f in fields(RolloutBatch))
        )
        self.obs, self.raw_obs, self.episode_return, self.resetting = (
            np.stack([getattr(r, name) for r in rollouts]) for name in ("obs", "raw_obs", "episode_return", "resetting")
        )
        for i, rollout in enumerate(rollouts):
            rollout.batch = RolloutBatch(*(getattr(self.batch, f.name)[i] for f in fields(RolloutBatch)))
            rollout.obs, rollout.raw_obs = self.obs[i], self.raw_obs[i]
            rollout.episode_return, rollout.resetting = self.episode_return[i], self.resetting[i]
        # K > 1 seeds' actors run as one stacked forward pass per step where it gives
        # each seed its own numbers (checked here, on these shapes); else one per seed.
        self.stacked = (
            len(rollouts) > 1
            and first.sde is None
            and stacked_forward_is_exact(self._mean_nets(), first.envs.num_envs, self.groups)
        )
        self._device = first.agent.actor.device

    def _mean_nets(self) -> list[torch.nn.Sequential]:
        return [rollout.agent.actor.mean_net for rollout in self.rollouts]

    @torch.no_grad()
    def collect(self) -> list[list[float]]:
        """Fill every seed's batch, stepping all their envs at once; return, per seed, the
        returns of the episodes that ended meanwhile.

        The envs come in groups (two EnvPool pools per seed, or one Gymnasium vector env):
        while every seed's group k steps, the loop stores the other group's results and
        sends its next actions. Each seed draws its actions from its own generator in the
        order a seed alone would.

        Observations are normalised with the statistics from before this rollout; the
        statistics take in the rollout's observations at its end (once, not per step).
        """
        for rollout in self.rollouts:
            rollout._begin()
        if self.stacked:
            self._mean_net = stacked_inference_forward(self._mean_nets())
            self._std = torch.stack([rollout._std for rollout in self.rollouts]).unsqueeze(1)
        normalizers = [rollout.agent.normalizer for rollout in self.rollouts]
        self._normalize = ObservationNormalizer.frozen_together(normalizers)
        self._finished: list[list[float]] = [[] for _ in self.rollouts]
        for k in range(len(self.groups)):
            self._act(0, k)
        for t in range(self.n_steps):
            for k in range(len(self.groups)):
                self._record(t, k)
                if t + 1 < self.n_steps:
                    self._act(t + 1, k)
        for normalizer, raw_obs in zip(normalizers, self.raw_obs, strict=True):
            normalizer.update(raw_obs.reshape(-1, raw_obs.shape[-1]))
        return self._finished

    def _act(self, t: int, k: int) -> None:
        """Choose every seed's actions for group k at time t and send them to its envs."""
        group = self.groups[k]
        obs = self.obs[:, group]
        seen = torch.as_tensor(obs, device=self._device)
        if self.stacked:  # each seed's sample_gaussian, one forward pass for all; each draws from its own stream
            mean = self._mean_net(seen)
            noise = torch.empty_like(mean)
            for i, rollout in enumerate(self.rollouts):
                noise[i].normal_(generator=rollout.generator)
            actions = noise.mul_(self._std).add_(mean).cpu().numpy()
        else:
            actions = torch.stack([r._action(t, k, seen[i]) for i, r in enumerate(self.rollouts)]).cpu().numpy()
        self.batch.obs[:, t, group], self.batch.act[:, t, group] = obs, actions
        for rollout, env_actions in zip(self.rollouts, self.to_env(actions), strict=True):
            rollout.stepper.send(k, env_actions)

    def _record(self, t: int, k: int) -> None:
        """Wait for every seed's group k at time t and store its step."""
        group, batch = self.groups[k], self.batch
        steps = [rollout.stepper.recv(k) for rollout in self.rollouts]
        next_obs, reward, terminated, truncated = (_stacked([step[i] for step in steps]) for i in range(4))
        done = terminated | truncated
        real_next = next_obs
        if not self.next_step_reset and done.any():
            real_next = _stacked([final_observations(s[0], d, s[4]) for s, d in zip(steps, done, strict=True)])
        batch.rew[:, t, group] = reward
        batch.terminated[:, t, group], batch.truncated[:, t, group] = terminated, truncated
        batch.obs_next[:, t, group] = normed = self._normalize(real_next)
        batch.valid[:, t, group] = ~self.resetting[:, group]
        self.raw_obs[:, t, group] = next_obs
        if self.next_step_reset:
            self.resetting[:, group] = done
        returns = self.episode_return[:, group]  # a view: updated in place
        returns += reward
        if done.any():
            for finished, seed_returns, seed_done in zip(self._finished, returns, done, strict=True):
                finished += seed_returns[seed_done].tolist()
            returns[done] = 0.0
        self.obs[:, group] = normed if real_next is next_obs else self._normalize(next_obs)


def _stacked(arrays: list[np.ndarray]) -> np.ndarray:
    """np.stack of a few small arrays, cheaper per call (np.stack is Python around
    several numpy calls); one array only gains a leading axis, without a copy."""
    if len(arrays) == 1:
        return arrays[0][None]
    out = np.empty((len(arrays), *arrays[0].shape), arrays[0].dtype)
    for i, array in enumerate(arrays):
        out[i] = array
    return out


def _tensors(state: dict) -> dict:
    """numpy arrays -> tensors: weights-only checkpoint loading accepts tensors only."""
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}


def _arrays(state: dict) -> dict:
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
