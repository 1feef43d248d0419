"""Vectorised, seeded Gymnasium environments."""

from __future__ import annotations

import difflib
import functools
import logging
import os

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
    env_id: str, num_envs: int, mode: str = "sync", env_kwargs: dict | None = None
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id``, autoresetting in the same step.

    With SAME_STEP autoreset a finished sub-env returns its first new observation at
    once and the true last observation in ``info["final_obs"]``, so every stored
    transition is a real one (no dummy reset step to mask out).
    """
    _quiet_mujoco()
    kwargs = dict(env_kwargs or {})
    fns = [lambda: _make_env(env_id, kwargs) for _ in range(num_envs)]
    mode_cls = {"sync": gym.vector.SyncVectorEnv, "async": gym.vector.AsyncVectorEnv}[mode]
    extra = {"context": "spawn" if os.name == "nt" else "fork"} if mode == "async" else {}
    return mode_cls(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, **extra)


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
