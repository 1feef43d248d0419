"""MuJoCo without noise, and envs that render without a display."""

from __future__ import annotations

import logging
import os

import gymnasium as gym

from abe.core.errors import ConfigError

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


# MUJOCO_GL -> (the library PyOpenGL loads for it, the Debian/Ubuntu package that has it)
_GL_LIBRARIES = {"osmesa": ("OSMesa", "libosmesa6"), "egl": ("EGL", "libegl1")}


def check_can_render(env_id: str) -> None:
    """One line instead of an OpenGL traceback when a MuJoCo env has nothing to draw with."""
    import ctypes.util

    entry_point = str(gym.spec(env_id).entry_point)
    if "mujoco" not in entry_point or "DISPLAY" in os.environ:
        return
    backend = os.environ.get("MUJOCO_GL", "osmesa")
    library, package = _GL_LIBRARIES.get(backend, (None, None))
    if library and ctypes.util.find_library(library) is None:
        raise ConfigError(
            f"--video: MuJoCo draws with {backend} (MUJOCO_GL) here and lib{library} is not installed; "
            f"install it (Debian/Ubuntu: sudo apt-get install {package}) or set MUJOCO_GL to a backend this machine has"
        )


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
    env = gym.make(env_id, render_mode="rgb_array", **env_kwargs)
    return FollowAgent(env) if moves_around(env) else env


# mjtJoint: a free joint (Ant) or a slide joint (HalfCheetah, Hopper, Walker2d,
# Swimmer) at the root lets the agent leave any fixed view.
_ROOT_JOINTS_THAT_TRAVEL = (0, 2)


def moves_around(env: gym.Env) -> bool:
    model = getattr(env.unwrapped, "model", None)
    return (
        hasattr(env.unwrapped, "mujoco_renderer")
        and model is not None
        and model.njnt > 0
        and (int(model.jnt_type[0]) in _ROOT_JOINTS_THAT_TRAVEL)
    )


class FollowAgent(gym.Wrapper):
    """Keep a MuJoCo agent in frame: before each frame the camera looks at its root body.

    Gymnasium renders through its free camera and resets the camera type on every
    frame, so the v5 envs' `trackbodyid` has no effect: moving the point the free
    camera looks at is what follows the agent (height and angle stay as the env sets them).
    """

    def render(self):
        renderer = self.env.unwrapped.mujoco_renderer
        if renderer.viewer is None:
            self.env.render()  # the first frame builds the viewer and its camera
        renderer.viewer.cam.lookat[:2] = self.env.unwrapped.data.xpos[1][:2]
        return self.env.render()
