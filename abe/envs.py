"""Vectorised, seeded Gymnasium environments."""

from __future__ import annotations

import difflib
import logging
import os

import gymnasium as gym
import numpy as np

from abe.errors import ConfigError

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
        first_line = str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__
        raise ConfigError(f"env.id: cannot create '{env_id}': {first_line}") from None
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


def _make_env(env_id: str, kwargs: dict) -> gym.Env:
    _quiet_mujoco()  # in this process, which may be an AsyncVectorEnv worker
    return gym.make(env_id, **kwargs)


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
