"""Vectorised, seeded environments on three backends."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

from abe.envs.envpool import EnvPoolVectorEnv
from abe.envs.mujoco import quiet_mujoco
from abe.envs.resumable import ResumableEnv


def _make_env(env_id: str, kwargs: dict) -> gym.Env:
    quiet_mujoco()  # in this process, which may be an AsyncVectorEnv worker
    return ResumableEnv(gym.make(env_id, **kwargs))


def make_vector_env(
    env_id: str, num_envs: int, backend: str = "sync", env_kwargs: dict | None = None, threads: int = 0
) -> gym.vector.VectorEnv | EnvPoolVectorEnv:
    """``num_envs`` copies of ``env_id`` on one of three backends.

    sync / async: Gymnasium's vector envs (in this process / one process per env),
    autoresetting in the same step: a finished sub-env returns its first new
    observation at once and the true last one in ``info["final_obs"]``.
    envpool: EnvPool's C++ envs stepped by ``threads`` threads (0: one per core).
    """
    quiet_mujoco()
    kwargs = dict(env_kwargs or {})
    if backend == "envpool":
        return EnvPoolVectorEnv(env_id, num_envs, threads or os.cpu_count() or 1, kwargs)
    fns = [lambda: _make_env(env_id, kwargs) for _ in range(num_envs)]
    mode_cls = {"sync": gym.vector.SyncVectorEnv, "async": gym.vector.AsyncVectorEnv}[backend]
    extra = {"context": "spawn" if os.name == "nt" else "fork"} if backend == "async" else {}
    return mode_cls(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, **extra)


def eval_backend(training_backend: str) -> str:
    """Where evaluation episodes run: side by side on EnvPool when training ran there
    (EnvPool's episodes differ from Gymnasium's for the same seed), else in this process
    (async processes would not pay off for them). Training and `abe evaluate` both ask here."""
    return "envpool" if training_backend == "envpool" else "sync"


class SteppedInTurn:
    """A Gymnasium vector env as one group with EnvPoolVectorEnv's send/recv: the
    step happens in `recv`, so the rollout loop can treat both alike."""

    def __init__(self, envs: gym.vector.VectorEnv):
        self.envs, self.groups, self._actions = envs, [slice(0, envs.num_envs)], None

    def send(self, group: int, actions: np.ndarray) -> None:
        self._actions = actions

    def recv(self, group: int):
        return self.envs.step(self._actions)


def final_observations(next_obs: np.ndarray, done: np.ndarray, info: dict) -> np.ndarray:
    """The observation each sub-env actually reached (before any autoreset)."""
    if not done.any():
        return next_obs
    real = next_obs.copy()
    for i in np.flatnonzero(done):
        real[i] = info["final_obs"][i]
    return real
