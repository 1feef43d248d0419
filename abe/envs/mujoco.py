"""MuJoCo without noise, and envs that render without a display."""

from __future__ import annotations

import logging
import os

import gymnasium as gym

log = logging.getLogger(__name__)

# MuJoCo 3.17+ warns about `settotalmass` on every load of Gymnasium's MuJoCo models
# and appends the warning to MUJOCO_LOG.TXT in the working directory: noise for users.
_SILENCED_MUJOCO_WARNINGS = ("'settotalmass' is deprecated",)


def quiet_mujoco() -> None:
    try:
        import mujoco
    except ImportError:  # classic-control-only installs
        return

    def on_warning(message: bytes | str) -> None:
        text = message.decode() if isinstance(message, bytes) else message
        if not any(s in text for s in _SILENCED_MUJOCO_WARNINGS):
            log.warning("MuJoCo: %s", text.strip())

    mujoco.set_mju_user_warning(on_warning)


def make_render_env(env_id: str, env_kwargs: dict) -> gym.Env:
    """One env that renders RGB frames without a display.

    MuJoCo draws with OSMesa (Debian `libosmesa6`) unless MUJOCO_GL says otherwise;
    classic-control envs draw through pygame's software surfaces.
    """
    if "DISPLAY" not in os.environ:
        os.environ.setdefault("MUJOCO_GL", "osmesa")
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    quiet_mujoco()
    return gym.make(env_id, render_mode="rgb_array", **env_kwargs)
