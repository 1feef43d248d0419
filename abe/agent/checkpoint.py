"""Checkpoints: weights, optimizer state, observation statistics and the run's config,
written atomically and loaded without running code (``torch.load(weights_only=True)``)."""

from __future__ import annotations

import io
from pathlib import Path

import torch
import yaml

from abe.agent.agent import Agent
from abe.core.errors import ConfigError, first_line
from abe.core.files import write_bytes
from abe.core.schema import Config
from abe.core.secrets import mask_secrets

FORMAT_VERSION = 2  # 2: config, progress, rollout position and RNG states for resume


def save_checkpoint(agent: Agent, path: Path, cfg: Config, training: dict) -> None:
    """Written whole or not at all (abe.core.files): a full disk or a kill mid-write
    leaves the last checkpoint intact.

    `training` holds the loop's progress, the rollout's position (env states included)
    and the random generators, so that `python -m abe resume` continues exactly.
    """
    ret_rms = agent.algorithm.ret_rms
    state = {
        **training,
        "format_version": FORMAT_VERSION,
        "config": mask_secrets(cfg.to_yaml()),
        "env_id": cfg.env.id,
        "env_steps": training["progress"]["env_steps"],
        "algorithm": agent.algorithm.state_dict(),
        "normalizer": agent.normalizer.state_dict(),
        "return_rms": {"mean": float(ret_rms.mean), "var": float(ret_rms.var), "count": ret_rms.count},
    }
    if agent.reward_sums is not None:
        state["reward_sums"] = torch.from_numpy(agent.reward_sums.copy())
    buffer = io.BytesIO()  # torch reports a full disk as "unexpected pos": write the bytes ourselves
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())


def read_checkpoint(path: Path) -> dict:
    """The checkpoint's contents; one clear ConfigError for anything that is not one."""
    if not path.is_file():
        raise ConfigError(f"checkpoint: no file at '{path}'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as ex:  # untrusted bytes: a torn or foreign file fails in many ways
        first_sentence = first_line(ex).split(".")[0]
        raise ConfigError(f"checkpoint: '{path}' is not an abe checkpoint ({first_sentence[:120]})") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise ConfigError(f"checkpoint: '{path}' is not an abe checkpoint")
    if state["format_version"] != FORMAT_VERSION:
        raise ConfigError(
            f"checkpoint: '{path}' has format {state['format_version']}; this abe reads format {FORMAT_VERSION}"
        )
    return state


def checkpoint_config(state: dict) -> Config:
    """The config the checkpoint was trained with: plain YAML, nothing resolved or run."""
    return Config.from_dict(yaml.safe_load(state["config"]))


def job_config(state: dict) -> Config:
    """The config of the job the checkpoint's seed belongs to: a population's (its members
    train with their own lr and gamma), else the seed's own."""
    return Config.from_dict(yaml.safe_load(state["job_config"])) if "job_config" in state else checkpoint_config(state)


def load_into(agent: Agent, state: dict) -> None:
    """Restore weights, optimizer state and statistics; name both shapes on a mismatch."""
    try:
        agent.algorithm.load_state_dict(dict(state["algorithm"]))
    except RuntimeError as ex:
        mismatch = [line.strip() for line in str(ex).splitlines() if "size mismatch" in line]
        detail = mismatch[0] if mismatch else first_line(ex)
        raise ConfigError(f"checkpoint: its network does not match the config: {detail}") from None
    agent.normalizer.load_state_dict(state["normalizer"])
    ret_rms = agent.algorithm.ret_rms
    ret_rms.mean, ret_rms.var, ret_rms.count = (state["return_rms"][k] for k in ("mean", "var", "count"))
    if agent.reward_sums is not None and "reward_sums" in state:
        agent.reward_sums[:] = state["reward_sums"].numpy()
