"""Env state a checkpoint can hold, so a resumed run continues every episode exactly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


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

            mujoco.mj_setState(
                inner.model, inner.data, np.asarray(state["mujoco"]), mujoco.mjtState.mjSTATE_INTEGRATION
            )
            mujoco.mj_forward(inner.model, inner.data)
        else:
            inner.state = np.asarray(state["state"]).copy()
        limit = self._time_limit()
        if limit is not None:
            limit._elapsed_steps = state["elapsed_steps"]
