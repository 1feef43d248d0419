"""What the training loop carries, and what its callbacks see.

A job trains K seeds at once (`n_seeds`; K = 1 is the plain run): K members, each an
independent agent with its own networks, optimizer, observation statistics, envs and
random stream, stepped and updated in one loop. A member trains exactly as a run of
its seed alone would (tests/unit/test_training.py checks it).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from abe.agent.agent import Agent
from abe.agent.rollout import Rollout
from abe.core.result import OBJECTIVE
from abe.core.schema import Config
from abe.training.evaluation import evaluate


@dataclass
class TrainingState:
    """What the loop carries between updates for one member; saved in its checkpoint."""

    env_steps: int = 0
    updates: int = 0
    next_eval: int = 0
    wall_time_s: float = 0.0  # spent before this process (resumed runs)
    episode_returns: list[float] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    episodes: int = 0  # finished training episodes
    # lr and gamma changed during training (a schedule, PBT): [env_steps, lr, gamma] from then on
    schedule: list[list] = field(default_factory=list)
    lineage: list[dict] = field(default_factory=list)  # PBT: whom this member copied, when
    pbt_round: int = 0  # PBT: the last exploit-and-explore round held
    pbt_mark: int = 0  # PBT: `episodes` at that round

    def to_dict(self) -> dict:
        return {**asdict(self), "episode_returns": self.episode_returns[-100:]}


@dataclass
class Member:
    """One seed of a job: its config (`cfg.seed` is its seed), agent, envs and state."""

    cfg: Config
    agent: Agent
    envs: object
    eval_envs: object
    rollout: Rollout
    generator: torch.Generator  # the member's action noise: its own stream
    state: TrainingState
    run_dir: Path

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def lr(self) -> float:
        """The lr this member trains with now (before lr decay scales it)."""
        return self.state.schedule[-1][1] if self.state.schedule else self.cfg.lr

    @property
    def gamma(self) -> float:
        return self.agent.algorithm.gamma

    def set_hparams(self, lr: float, gamma: float) -> None:
        """From the next update on, train with `lr` and `gamma`; recorded in the schedule."""
        for group in self.agent.optimizer.param_groups:
            group["lr"] = lr
        self.agent.algorithm.gamma = gamma
        self.state.schedule.append([self.state.env_steps, lr, gamma])

    def evaluate(self, losses: dict[str, float], elapsed: float) -> dict:
        """Evaluation episodes with the mean action; the record of this evaluation."""
        state = self.state
        state.next_eval += self.cfg.trainer.eval_every
        returns = evaluate(self.agent, self.eval_envs, self.cfg.seed)
        record = {
            "env_steps": state.env_steps,
            OBJECTIVE: float(returns.mean()),
            "eval/return_std": float(returns.std()),
            "perf/fps": state.env_steps / elapsed,
            "train/lr": self.agent.optimizer.param_groups[0]["lr"],
            "train/gamma": self.gamma,
            **losses,
        }
        if state.episode_returns:
            record["train/episode_return"] = float(np.mean(state.episode_returns[-20:]))
        state.evaluations.append(record)
        return record


@dataclass
class Trainer:
    """What callbacks see: the job's config, its members, and the loop's progress."""

    cfg: Config
    members: list[Member]
    start: float = 0.0  # perf_counter() at which this run would have started, resumes included
    stopped_early: str | None = None  # why a callback stopped training before its budget

    @property
    def env_steps(self) -> int:
        """Env steps per member (all members step together)."""
        return self.members[0].state.env_steps

    @property
    def steps_per_update(self) -> int:
        return self.cfg.algo.n_steps * self.cfg.trainer.num_envs

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
