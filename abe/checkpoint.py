"""Checkpoints: weights, optimizer state and observation statistics, written atomically
and loaded without running code (``torch.load(weights_only=True)``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from abe.agent import Agent

FORMAT_VERSION = 1


def save_checkpoint(agent: Agent, path: Path, env_steps: int, env_id: str) -> None:
    """Write to a temporary file, then rename: a kill mid-write leaves the old one intact."""
    ret_rms = agent.algorithm.ret_rms
    state = {
        "format_version": FORMAT_VERSION,
        "env_id": env_id,
        "env_steps": env_steps,
        "algorithm": agent.algorithm.state_dict(),
        "normalizer": agent.normalizer.state_dict(),
        "return_rms": {"mean": float(ret_rms.mean), "var": float(ret_rms.var), "count": ret_rms.count},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
