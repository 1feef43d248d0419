"""Every private name abe takes from a dependency, fenced here.

Each entry says why no public API serves. tests/unit/test_compat.py checks each one
against the installed dependency and fails with its name and version when it moves;
at run time a name that moved falls back to the public API with one log line (EnvPool)
or fails with one line naming the dependency (Tianshou, Hydra). No other abe module
reaches into a dependency's private parts (tests/unit/test_code_health.py).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)


class DependencyChanged(RuntimeError):
    """A private name abe relies on is gone: the message names the dependency and version."""


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


# --- EnvPool: its C++ send/recv without the Python wrapper -----------------------------
# EnvPool's public `send`/`recv` build dicts, check actions and unflatten infos on every
# call: on abe's small pools that costs as much as the physics (docs/benchmarks.md). The
# C++ calls behind them take and give plain lists of arrays in the spec's key order.


class EnvPoolDirectIO(NamedTuple):
    """How to call a pool's C++ `_send`/`_recv` directly (same arrays, same numbers)."""

    action_keys: list[str]  # the order _send takes its arrays in
    action_dtype: np.dtype
    state_index: list[int]  # where obs, reward, done and trunc are in _recv's list

    @staticmethod
    def of(pool) -> EnvPoolDirectIO | None:
        """The direct calls for this pool, found by looking (any EnvPool version), or
        None, said once in the log, to step through pool.send/recv: a pool whose private
        layout is not the one abe knows, or one with several players or nested actions."""
        try:
            spec = pool._spec
            action_keys, state_keys = list(spec._action_keys), list(pool._state_keys)
            dtype = spec._action_spec[action_keys.index("action")][0]
            pool._send, pool._recv  # noqa: B018  (both must exist)
        except (AttributeError, ValueError, IndexError, TypeError) as ex:
            log.warning(
                "EnvPool %s: its C++ send/recv are not where abe looks (%s); stepping through its public "
                "send/recv (same numbers, slower)",
                _version("envpool"),
                ex,
            )
            return None
        if (
            pool.config.get("max_num_players", 1) != 1
            or sorted(action_keys) != ["action", "env_id", "players.env_id"]
            or not {"obs", "reward", "done", "trunc"} <= set(state_keys)
        ):
            return None
        state_index = [state_keys.index(key) for key in ("obs", "reward", "done", "trunc")]
        return EnvPoolDirectIO(action_keys, dtype, state_index)

    def send(self, pool, actions: np.ndarray) -> None:
        pool._send(
            [
                np.array(actions, dtype=self.action_dtype, order="C") if key == "action" else pool.all_env_ids
                for key in self.action_keys
            ]
        )

    def recv(self, pool):
        """(obs, reward, terminated, truncated, {}): abe reads none of EnvPool's info."""
        state = pool._recv()
        obs, reward, done, trunc = (state[i] for i in self.state_index)
        return obs, reward, done & ~trunc, trunc, {}


# --- Tianshou: the torch optimizer inside an Algorithm ---------------------------------
# Tianshou 2.0.1 wraps the optimizer its factory builds (`Algorithm.optim`) and exposes
# step/zero_grad/state_dict, not the torch object whose param_groups hold the lr that
# lr decay anneals and that resume and checkpoints restore.


def torch_optimizer(algorithm):
    """The torch.optim.Optimizer of a Tianshou Algorithm."""
    optimizer = getattr(getattr(algorithm, "optim", None), "_optim", None)
    if optimizer is None or not hasattr(optimizer, "param_groups"):
        raise DependencyChanged(
            f"tianshou {_version('tianshou')}: Algorithm.optim._optim is not a torch optimizer any more; "
            "abe needs a way to its param_groups (abe/core/compat.py)"
        )
    return optimizer


# --- Hydra: the command line as Hydra parses it -----------------------------------------
# run.py checks a command line before Hydra makes a run dir; Hydra's own argument parser
# tells flags (-m, --cfg, --config-path) from overrides exactly as Hydra will.


def hydra_args_parser():
    try:
        from hydra._internal.utils import get_args_parser
    except ImportError as ex:
        raise DependencyChanged(
            f"hydra-core {_version('hydra-core')}: hydra._internal.utils.get_args_parser is gone ({ex}); "
            "abe/core/compat.py needs updating"
        ) from None
    return get_args_parser()
