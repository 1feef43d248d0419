"""Vectorised, seeded Gymnasium environments."""

from __future__ import annotations

import difflib
import functools
import logging
import os
import warnings
from typing import NamedTuple

import gymnasium as gym
import numpy as np

from abe.errors import ConfigError, first_line

log = logging.getLogger(__name__)

# MuJoCo 3.17+ warns about `settotalmass` on every load of Gymnasium's MuJoCo models
# and appends the warning to MUJOCO_LOG.TXT in the working directory: noise for users.
_SILENCED_MUJOCO_WARNINGS = ("'settotalmass' is deprecated",)


def _quiet_mujoco() -> None:
    try:
        import mujoco
    except ImportError:  # classic-control-only installs
        return

    def on_warning(message: bytes | str) -> None:
        text = message.decode() if isinstance(message, bytes) else message
        if not any(s in text for s in _SILENCED_MUJOCO_WARNINGS):
            log.warning("MuJoCo: %s", text.strip())

    mujoco.set_mju_user_warning(on_warning)


@functools.lru_cache(maxsize=None)  # run.py validates in its preflight check and in the job
def check_env_id(env_id: str) -> gym.spaces.Box:
    """Fail with one clear line unless ``env_id`` is a registered continuous-action env.

    Returns the action space so callers need not build the env twice.
    """
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see gymnasium.registry for ids"
        raise ConfigError(f"env.id: unknown Gymnasium environment '{env_id}'{hint}")
    _quiet_mujoco()
    try:
        env = gym.make(env_id)
    except Exception as ex:  # missing extras (box2d, mujoco), removed versions, ...
        raise ConfigError(f"env.id: cannot create '{env_id}': {first_line(ex)}") from None
    try:
        space = env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ConfigError(
                f"env.id: '{env_id}' has a {type(space).__name__} action space; "
                "abe's A2C needs a continuous (Box) action space, e.g. Pendulum-v1 or HalfCheetah-v5"
            )
        return space
    finally:
        env.close()


class ResumableEnv(gym.Wrapper):
    """Gets and sets everything that decides an env's future, as plain arrays and ints,
    so a checkpoint can hold it (weights-only loading) and a resumed run continues each
    episode exactly where it stopped: the MuJoCo integration state (mj_getState, with
    the solver warm start) or a classic-control env's `state`, the env's random
    generator, and the time limit's step count. `envs.call("get_state")` reaches it in
    sync and async vector envs alike."""

    def _time_limit(self) -> gym.wrappers.TimeLimit | None:
        env = self.env
        while isinstance(env, gym.Wrapper):
            if isinstance(env, gym.wrappers.TimeLimit):
                return env
            env = env.env
        return None

    @property
    def snapshot(self) -> dict | None:
        """`envs.get_attr("snapshot")` / `envs.set_attr("snapshot", states)`: one per env."""
        return self.get_state()

    @snapshot.setter
    def snapshot(self, state: dict) -> None:
        self.set_state(state)

    def get_state(self) -> dict | None:
        inner = self.env.unwrapped
        state: dict = {"np_random": inner.np_random.bit_generator.state}
        if hasattr(inner, "model") and hasattr(inner, "data"):
            import mujoco

            spec = mujoco.mjtState.mjSTATE_INTEGRATION
            physics = np.empty(mujoco.mj_stateSize(inner.model, spec))
            mujoco.mj_getState(inner.model, inner.data, physics, spec)
            state["mujoco"] = physics
        elif isinstance(getattr(inner, "state", None), np.ndarray):
            state["state"] = inner.state.copy()
        else:
            return None  # an env abe does not know how to capture
        limit = self._time_limit()
        state["elapsed_steps"] = limit._elapsed_steps if limit is not None else None
        return state

    def set_state(self, state: dict) -> None:
        inner = self.env.unwrapped
        inner.np_random.bit_generator.state = state["np_random"]
        if "mujoco" in state:
            import mujoco

            mujoco.mj_setState(inner.model, inner.data, np.asarray(state["mujoco"]), mujoco.mjtState.mjSTATE_INTEGRATION)
            mujoco.mj_forward(inner.model, inner.data)
        else:
            inner.state = np.asarray(state["state"]).copy()
        limit = self._time_limit()
        if limit is not None:
            limit._elapsed_steps = state["elapsed_steps"]


def _make_env(env_id: str, kwargs: dict) -> gym.Env:
    _quiet_mujoco()  # in this process, which may be an AsyncVectorEnv worker
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
    _quiet_mujoco()
    kwargs = dict(env_kwargs or {})
    if backend == "envpool":
        return EnvPoolVectorEnv(env_id, num_envs, threads or os.cpu_count() or 1, kwargs)
    fns = [lambda: _make_env(env_id, kwargs) for _ in range(num_envs)]
    mode_cls = {"sync": gym.vector.SyncVectorEnv, "async": gym.vector.AsyncVectorEnv}[backend]
    extra = {"context": "spawn" if os.name == "nt" else "fork"} if backend == "async" else {}
    return mode_cls(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, **extra)


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

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, env_id: str, num_envs: int, threads: int, kwargs: dict):
        envpool = import_envpool()
        sizes = [num_envs - num_envs // 2, num_envs // 2] if num_envs > 1 else [1]
        self.groups = [slice(sum(sizes[:k]), sum(sizes[: k + 1])) for k in range(len(sizes))]
        per_pool = max(1, threads // len(sizes))
        self._makers = [
            functools.partial(envpool.make, env_id, env_type="gymnasium", num_envs=n, num_threads=min(per_pool, n), **kwargs)
            for n in sizes
        ]
        self.num_envs = num_envs
        self.pools = self._new_pools(first_seed=0)
        self._direct = _direct_io(self.pools[0], envpool.__version__)
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
            return
        pool._send([np.array(actions, dtype=self._direct.action_dtype, order="C") if key == "action"
                    else pool.all_env_ids for key in self._direct.action_keys])

    def recv(self, group: int):
        """Wait for a group's step: (obs, reward, terminated, truncated, info); on the
        direct path the info is empty (abe reads none of EnvPool's)."""
        if self._direct is None:
            return self.pools[group].recv()
        state = self.pools[group]._recv()
        obs, reward, done, trunc = (state[i] for i in self._direct.state_index)
        return obs, reward, done & ~trunc, trunc, {}

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


class DirectIO(NamedTuple):
    action_keys: list[str]  # the order _send takes its arrays in
    action_dtype: np.dtype
    state_index: list[int]  # where obs, reward, done and trunc are in _recv's list


def _direct_io(pool, version: str) -> DirectIO | None:
    """What EnvPoolVectorEnv needs to call a pool's C++ _send/_recv itself, or None to
    go through pool.send/recv. The direct calls are envpool 1.2.5's send/recv less their
    Python (per-call dict building, checks, info unflattening: ~25 us of a ~65 us
    send+recv, scratch timing), for single-player envs with flat observations, which
    all of abe's are; tests/test_training.py checks both paths step alike.
    """
    spec = pool._spec
    action_keys, state_keys = list(spec._action_keys), list(pool._state_keys)
    if (version != "1.2.5" or pool.config.get("max_num_players", 1) != 1
            or sorted(action_keys) != ["action", "env_id", "players.env_id"] or "obs" not in state_keys):
        return None
    dtype = spec._action_spec[action_keys.index("action")][0]
    return DirectIO(action_keys, dtype, [state_keys.index(key) for key in ("obs", "reward", "done", "trunc")])


class SteppedInTurn:
    """A Gymnasium vector env as one group with EnvPoolVectorEnv's send/recv: the
    step happens in `recv`, so the rollout loop can treat both alike."""

    def __init__(self, envs: gym.vector.VectorEnv):
        self.envs, self.groups, self._actions = envs, [slice(0, envs.num_envs)], None

    def send(self, group: int, actions: np.ndarray) -> None:
        self._actions = actions

    def recv(self, group: int):
        return self.envs.step(self._actions)


def import_envpool():
    try:
        import envpool
    except ImportError:
        raise ConfigError("env.backend=envpool: the envpool package is not installed; "
                          "install it with `pip install envpool`, or use env.backend=sync") from None
    return envpool


def check_backend(env_id: str, backend: str, kwargs: dict | None = None) -> None:
    """For env.backend=envpool: one clear line unless EnvPool can build this env
    (it builds a one-env pool: ~20 ms)."""
    if backend != "envpool":
        return
    envpool = import_envpool()
    known = envpool.list_all_envs()
    if env_id not in known:
        close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.6)
        hint = f"; EnvPool has {', '.join(close)}" if close else "; see envpool.list_all_envs()"
        raise ConfigError(f"env.id: '{env_id}' is not an EnvPool env{hint}; or use env.backend=sync")
    try:
        EnvPoolVectorEnv(env_id, 1, 1, dict(kwargs or {})).close()
    except Exception as ex:  # unknown kwargs: Config.__new__() got an unexpected keyword argument
        raise ConfigError(f"env.kwargs: EnvPool cannot build '{env_id}' with {dict(kwargs or {})}: {first_line(ex)}") from None


def make_render_env(env_id: str, env_kwargs: dict) -> gym.Env:
    """One env that renders RGB frames without a display.

    MuJoCo draws with OSMesa (Debian `libosmesa6`) unless MUJOCO_GL says otherwise;
    classic-control envs draw through pygame's software surfaces.
    """
    if "DISPLAY" not in os.environ:
        os.environ.setdefault("MUJOCO_GL", "osmesa")
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    _quiet_mujoco()
    return gym.make(env_id, render_mode="rgb_array", **env_kwargs)


def final_observations(next_obs: np.ndarray, done: np.ndarray, info: dict) -> np.ndarray:
    """The observation each sub-env actually reached (before any autoreset)."""
    if not done.any():
        return next_obs
    real = next_obs.copy()
    for i in np.flatnonzero(done):
        real[i] = info["final_obs"][i]
    return real
