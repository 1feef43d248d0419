"""EnvPool's C++ envs behind the part of Gymnasium's VectorEnv API that abe uses."""

from __future__ import annotations

import functools
import warnings
from typing import ClassVar

import gymnasium as gym
import numpy as np

from abe.core.compat import EnvPoolDirectIO
from abe.core.errors import ConfigError


def import_envpool():
    try:
        import envpool
    except ImportError:
        raise ConfigError(
            "env.backend=envpool: the envpool package is not installed; "
            "install it with `pip install envpool`, or use env.backend=sync"
        ) from None
    return envpool


class EnvPoolVectorEnv:
    """EnvPool (https://github.com/sail-sg/envpool, a dependency of abe) behind the
    part of Gymnasium's VectorEnv API that abe uses.

    EnvPool steps its envs in C++ worker threads, outside the GIL and without Python's
    per-step cost. Its MuJoCo tasks are its own C++ ports of Gymnasium's (same model
    files, rewards and time limits; other random streams). What differs for abe:
    autoreset happens on the step after an episode ends (NEXT_STEP: that step's action
    is ignored and abe does not learn from it); seeds are fixed when a pool is built
    (env i gets seed + i), so ``reset(seed=...)`` builds new pools; and no env state
    can be captured, so a resumed run starts new episodes.

    The envs are split into two pools (`groups`): while one steps in its threads, the
    training loop chooses the other's actions (abe.rollout). Each pool is
    deterministic, so the whole is too.
    """

    metadata: ClassVar[dict] = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, env_id: str, num_envs: int, threads: int, kwargs: dict):
        envpool = import_envpool()
        sizes = [num_envs - num_envs // 2, num_envs // 2] if num_envs > 1 else [1]
        self.groups = [slice(sum(sizes[:k]), sum(sizes[: k + 1])) for k in range(len(sizes))]
        per_pool = max(1, threads // len(sizes))
        self._makers = [
            functools.partial(
                envpool.make, env_id, env_type="gymnasium", num_envs=n, num_threads=min(per_pool, n), **kwargs
            )
            for n in sizes
        ]
        self.num_envs = num_envs
        self.pools = self._new_pools(first_seed=0)
        self._direct = EnvPoolDirectIO.of(self.pools[0])
        # what a run's `env.stepping` tag says: EnvPool's C++ calls, or its slower public ones
        self.stepping = "envpool: direct C++ send/recv" if self._direct else "envpool: public send/recv"
        self.single_observation_space = self.pools[0].observation_space
        self.single_action_space = self.pools[0].action_space
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)

    def reset(self, seed: int | list[int] | None = None):
        if seed is not None:
            first = seed if isinstance(seed, int) else seed[0]
            if not isinstance(seed, int) and list(seed) != list(range(first, first + self.num_envs)):
                raise ValueError("EnvPool seeds env i with seed + i: pass consecutive seeds")
            self.close()
            self.pools = self._new_pools(first)
        results = [pool.reset() for pool in self.pools]
        return np.concatenate([obs for obs, _ in results]), {}

    def _new_pools(self, first_seed: int) -> list:
        pools = [make(seed=first_seed + g.start) for make, g in zip(self._makers, self.groups, strict=True)]
        with warnings.catch_warnings():  # EnvPool builds float32 spaces from float64 bounds
            warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32")
            for pool in pools:
                pool.observation_space, pool.action_space  # noqa: B018  (built once, here)
        return pools

    def send(self, group: int, actions: np.ndarray) -> None:
        """Start stepping one group's envs (returns at once)."""
        pool = self.pools[group]
        if self._direct is None:
            pool.send(np.asarray(actions, dtype=self.single_action_space.dtype))
        else:
            self._direct.send(pool, actions)

    def recv(self, group: int):
        """Wait for a group's step: (obs, reward, terminated, truncated, info); on the
        direct path the info is empty (abe reads none of EnvPool's)."""
        if self._direct is None:
            return self.pools[group].recv()
        return self._direct.recv(self.pools[group])

    def step(self, actions: np.ndarray):
        for k, group in enumerate(self.groups):
            self.send(k, actions[group])
        results = [self.recv(k) for k in range(len(self.groups))]
        obs, reward, terminated, truncated = (np.concatenate([r[i] for r in results]) for i in range(4))
        return obs, reward, terminated, truncated, {}

    def get_attr(self, name: str) -> list:
        if name != "snapshot":
            raise AttributeError(name)
        return [None] * self.num_envs  # EnvPool exposes no env state

    def close(self) -> None:
        for pool in self.pools:
            pool.close()
