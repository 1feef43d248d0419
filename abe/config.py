"""Checks a composed config before anything is built, and turns Hydra's composition
errors into one line that names the key and what is allowed."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from numbers import Real

from hydra.errors import (
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf import DictConfig, OmegaConf

from abe.errors import ConfigError, first_line
from abe.networks import ACTIVATIONS
from abe.optimizers import OPTIMIZERS

DEVICES = ("cpu", "cuda", "auto")
ENV_BACKENDS = ("sync", "async", "envpool")  # abe.envs.make_vector_env


def _number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# key -> (check, what is allowed). Keys are dotted paths of the composed config.
RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "lr": (lambda v: _number(v) and v > 0, "a number > 0, e.g. lr=3e-4"),
    "gamma": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1], e.g. gamma=0.99"),
    "seed": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
    "n_seeds": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "network.width": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "network.depth": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "network.activation": (lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}"),
    "network.layer_norm": (lambda v: isinstance(v, bool), "true or false"),
    "network.log_std_init": (lambda v: _number(v) and -20 <= v <= 2, "a number in [-20, 2]"),
    "optimizer.name": (lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
    "optimizer.weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "algo.n_steps": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "algo.gae_lambda": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "algo.vf_coef": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "algo.ent_coef": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "algo.max_grad_norm": (lambda v: v is None or (_number(v) and v > 0), "a number > 0 or null"),
    "algo.normalize_obs": (lambda v: isinstance(v, bool), "true or false"),
    "algo.return_scaling": (lambda v: isinstance(v, bool), "true or false"),
    "algo.lr_decay": (lambda v: isinstance(v, bool), "true or false"),
    "algo.normalize_advantage": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.total_steps": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "trainer.num_envs": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "trainer.eval_every": (lambda v: _integer(v) and v >= 1, "an integer >= 1 (env steps)"),
    "trainer.eval_episodes": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "trainer.device": (lambda v: v in DEVICES, f"one of {', '.join(DEVICES)}"),
    "trainer.torch_threads": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "env.id": (lambda v: isinstance(v, str) and v != "", "a Gymnasium environment id"),
    "logger.name": (lambda v: v in ("mlflow", "none"), "mlflow or none"),
    "env.backend": (lambda v: v in ENV_BACKENDS, f"one of {', '.join(ENV_BACKENDS)}"),
    "env.threads": (lambda v: _integer(v) and v >= 0, "an integer >= 0 (0: one per CPU core)"),
}


def _select(cfg: DictConfig, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            raise ConfigError(f"{dotted}: missing from the config (was it deleted with ~{dotted}?)")
        node = node[part]
    return node


GROUPS = ("env", "network", "optimizer", "algo", "trainer", "logger")
ADDED_LATER = {"n_seeds", "env.threads", "algo.lr_decay", "algo.normalize_advantage"}  # absent from configs saved by older runs: the default applies


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first bad value; check the env id last (it is slow)."""
    for group in GROUPS:
        if not isinstance(cfg.get(group), DictConfig):
            raise ConfigError(
                f"{group}: got {cfg.get(group)!r} instead of a section of keys; a saved run config "
                f"(--config-path <run dir>/.hydra) has no config groups: set its keys, e.g. {group}.<key>=..."
            )
    for key, (check, allowed) in RULES.items():
        if key in ADDED_LATER and OmegaConf.select(cfg, key) is None:
            continue
        value = _select(cfg, key)
        if not check(value):
            raise ConfigError(f"{key}: got {value!r}; allowed: {allowed}")
    if cfg.optimizer.name == "sgd" and cfg.optimizer.get("momentum", 0) < 0:
        raise ConfigError(f"optimizer.momentum: got {cfg.optimizer.momentum!r}; allowed: a number >= 0")
    from abe.envs import check_backend, check_env_id  # imports gymnasium and MuJoCo
    from abe.tracking import check_tracking_uri, user_tracking_uri

    check_env_id(cfg.env.id)
    check_backend(cfg.env.id, cfg.env.backend, OmegaConf.to_container(cfg.env.kwargs, resolve=True))
    if cfg.logger.name == "mlflow" and user_tracking_uri(cfg.logger):
        check_tracking_uri(user_tracking_uri(cfg.logger))


_GROUP_FROM_MISSING = re.compile(r"Could not (?:find|load) '([\w/]+)/([^']+)'")
_UNKNOWN_KEY = re.compile(r"Could not override '([^']+)'")


def unknown_key(ex: Exception) -> str | None:
    """The dotted key of a `Could not override 'a.b'` composition error."""
    found = _UNKNOWN_KEY.search(str(ex)) if isinstance(ex, ConfigCompositionException) else None
    return found.group(1) if found else None


def keys_near(cfg: DictConfig, dotted: str) -> str:
    """The keys that exist next to an unknown dotted key, for the error message."""
    parent, _, _ = dotted.rpartition(".")
    node = cfg
    for part in parent.split(".") if parent else []:
        if not isinstance(node, DictConfig) or part not in node:
            return ""
        node = node[part]
    names = [k for k in node.keys() if k != "hydra"] if isinstance(node, DictConfig) else []
    return f"{parent or 'the top level'} has: {', '.join(map(str, names))}" if names else ""


def explain_hydra_error(ex: Exception, base_cfg: DictConfig | None = None) -> str:
    """One line for a Hydra composition error (unknown preset, unknown key, bad syntax)."""
    text = str(ex)
    if isinstance(ex, OverrideParseException):
        detail = ex.message.strip().splitlines()[0]
        return f"malformed override '{ex.override}': {detail}"
    if isinstance(ex, MissingConfigException):
        found = _GROUP_FROM_MISSING.search(text)
        options = ", ".join(sorted(o for o in (ex.options or []) if not o.startswith("_")))
        if found:
            group, name = found.groups()
            return f"{group}: unknown option '{name}'; allowed: {options or '(none)'}"
        return first_line(ex)
    key = unknown_key(ex)
    if key:
        near = keys_near(base_cfg, key) if base_cfg is not None else ""
        return f"unknown config key '{key}'; " + (near or "see `python run.py --cfg job` for all keys")
    if isinstance(ex, ConfigCompositionException):
        lines = [line for line in text.splitlines() if line.strip()]
        return " ".join(lines[:2])
    return f"{type(ex).__name__}: {first_line(ex) if text.strip() else ''}"
