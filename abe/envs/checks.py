"""One clear line, before anything is built, for an env abe cannot train on."""

from __future__ import annotations

import difflib
import functools
import inspect
import re

import gymnasium as gym

from abe.core.errors import ConfigError, first_line
from abe.envs.envpool import EnvPoolVectorEnv, import_envpool
from abe.envs.mujoco import quiet_mujoco


@functools.cache  # run.py validates in its preflight check and in the job
def check_env_id(env_id: str) -> gym.spaces.Box:
    """Fail with one clear line unless ``env_id`` is a registered continuous-action env.

    Returns the action space so callers need not build the env twice.
    """
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see gymnasium.registry for ids"
        raise ConfigError(f"env.id: unknown Gymnasium environment '{env_id}'{hint}")
    quiet_mujoco()
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


_UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '([^']+)'")


def check_env_kwargs(env_id: str, kwargs: dict) -> None:
    """One clear line unless `gymnasium.make(env_id, **kwargs)` builds (it builds the env
    once: ~10 ms for MuJoCo). Names the refused key and the keywords the env takes."""
    if not kwargs:
        return
    quiet_mujoco()
    try:
        env = gym.make(env_id, **kwargs)
        try:  # values of the wrong type often fail only here
            env.reset(seed=0)
            env.step(env.action_space.sample())
        finally:
            env.close()
    except Exception as ex:
        unexpected = _UNEXPECTED_KEYWORD.search(str(ex))
        if unexpected:
            key, taken = unexpected.group(1), ", ".join(env_keywords(env_id)) or "none"
            raise ConfigError(f"env.kwargs.{key}: {env_id} takes no keyword '{key}'; it takes: {taken}") from None
        raise ConfigError(f"env.kwargs: {env_id} cannot run with {kwargs}: {first_line(ex).rstrip(':')}") from None


def env_keywords(env_id: str) -> list[str]:
    """The keyword arguments the env's class takes (its entry point's signature)."""
    entry = gym.spec(env_id).entry_point
    try:
        target = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
        parameters = inspect.signature(target).parameters.values()
    except Exception:  # an entry point that cannot be inspected: say nothing rather than guess
        return []
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]


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
        raise ConfigError(
            f"env.kwargs: EnvPool cannot build '{env_id}' with {dict(kwargs or {})}: {first_line(ex)}"
        ) from None
