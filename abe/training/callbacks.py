"""What happens around the training loop, as callbacks (the shape of SB3's).

The loop calls `on_update` after every update and `on_evaluation` after every
evaluation, with one record per member (seed) of the job; a callback that returns
False from `on_evaluation` stops training, with its `stop_reason`. Every callback runs
at every evaluation, so their order does not decide whether a checkpoint is written
before a stop. Callbacks about one seed's run (its metrics, checkpoint, model) take the
index of their member.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from abe.agent.checkpoint import save_checkpoint
from abe.agent.export import deterministic_policy
from abe.core.result import OBJECTIVE
from abe.core.secrets import mask_secrets
from abe.training.seeding import rng_state

if TYPE_CHECKING:
    from torch import nn

    from abe.training.trainer import Trainer


class Callback:
    stop_reason: str | None = None

    def on_training_start(self, trainer: Trainer) -> None:
        pass

    def on_update(self, trainer: Trainer) -> None:
        pass

    def on_evaluation(self, trainer: Trainer, records: list[dict]) -> bool:
        """`records`: each member's metrics and env_steps, in member order. False stops training."""
        return True

    def on_training_end(self, trainer: Trainer) -> None:
        """After the last evaluation of a run that ended normally or was stopped."""

    def close(self) -> None:
        """Always, even when training failed: release what the callback holds."""


class SteppingTag(Callback):
    """Tags a seed's run with how its envs step (`env.stepping`): for EnvPool, its direct
    C++ calls or, where a new EnvPool moved them, its public send/recv (same numbers, slower)."""

    def __init__(self, set_tags: Callable[[dict[str, str]], None], member: int = 0):
        self.set_tags, self.member = set_tags, member

    def on_training_start(self, trainer: Trainer) -> None:
        envs = trainer.members[self.member].envs
        self.set_tags({"env.stepping": getattr(envs, "stepping", f"gymnasium: {trainer.cfg.env.backend}")})


class LrDecay(Callback):
    """`algo.lr_decay`: lr falls linearly to 0 over the budget (Tianshou's MuJoCo examples);
    from each member's own lr (a schedule or PBT changes it)."""

    def on_update(self, trainer: Trainer) -> None:
        remaining = max(0.0, 1.0 - trainer.env_steps / trainer.cfg.trainer.total_steps)
        for member in trainer.members:
            for group in member.agent.optimizer.param_groups:
                group["lr"] = member.lr * remaining


class Schedule(Callback):
    """`schedule`: each member trains with lr and gamma from the listed env steps on (a
    PBT member's schedule, replayed from scratch on other seeds)."""

    def __init__(self, points: list[list]):
        self.points = points

    def on_update(self, trainer: Trainer) -> None:
        for member in trainer.members:
            done = member.state.schedule[-1][0] if member.state.schedule else -1
            due = [p for p in self.points if done < p[0] <= member.state.env_steps]
            if due:
                member.set_hparams(due[-1][1], due[-1][2])


class ProgressBar(Callback):
    """A tqdm bar on stderr: env steps (all seeds together), steps/s, the latest eval return."""

    def on_training_start(self, trainer: Trainer) -> None:
        cfg, seeds = trainer.cfg, len(trainer.members)
        self.bar = tqdm(
            total=cfg.trainer.total_steps * seeds,
            initial=trainer.env_steps * seeds,
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            disable=not cfg.trainer.progress_bar,
            desc=cfg.env.id if seeds == 1 else f"{cfg.env.id} x{seeds} seeds",
        )

    def on_update(self, trainer: Trainer) -> None:
        self.bar.update(trainer.steps_per_update * len(trainer.members))

    def on_evaluation(self, trainer: Trainer, records: list[dict]) -> bool:
        shown = (
            " / ".join(f"{r[OBJECTIVE]:.0f}" for r in records) if len(records) > 1 else f"{records[0][OBJECTIVE]:.1f}"
        )
        self.bar.set_postfix_str(f"eval {shown}", refresh=True)
        return True

    def close(self) -> None:
        self.bar.close()


class MetricLogger(Callback):
    """Every evaluation's metrics of one member to its tracker, at its env step."""

    def __init__(self, log_metrics: Callable[[dict[str, float], int], None], member: int = 0):
        self.log_metrics, self.member = log_metrics, member

    def on_evaluation(self, trainer: Trainer, records: list[dict]) -> bool:
        record = records[self.member]
        self.log_metrics({k: v for k, v in record.items() if k != "env_steps"}, record["env_steps"])
        return True


class Checkpointer(Callback):
    """At every evaluation, the member's `checkpoints/last.pt`: everything `python -m abe
    resume` needs to continue exactly (weights, optimizer, statistics, progress, the
    rollout's position with env states, the random generators) and the MLflow run to go
    on with."""

    def __init__(self, run_id: Callable[[], str | None] = lambda: None, member: int = 0):
        self.run_id, self.member = run_id, member

    def on_evaluation(self, trainer: Trainer, records: list[dict]) -> bool:
        member = trainer.members[self.member]
        member.state.wall_time_s = trainer.elapsed()
        save_checkpoint(
            member.agent,
            member.checkpoint_path,
            member.cfg,
            {
                "progress": member.state.to_dict(),
                "rollout": member.rollout.snapshot(),
                "rng": rng_state(member.generator),
                "mlflow_run_id": self.run_id(),
                # a population's members train with their own lr and gamma: resume needs the job's config
                **({"job_config": mask_secrets(trainer.cfg.to_yaml())} if trainer.cfg.pbt else {}),
            },
        )
        return True


class ModelExport(Callback):
    """At the end of a run that used its whole budget, the member's policy as plain
    torch layers (abe.agent.export) to `log_model`."""

    def __init__(self, log_model: Callable[[nn.Module, np.ndarray], None], member: int = 0):
        self.log_model, self.member = log_model, member

    def on_training_end(self, trainer: Trainer) -> None:
        if trainer.stopped_early:
            return
        member = trainer.members[self.member]
        example = member.envs.single_observation_space.sample()[None].astype(np.float32)
        self.log_model(deterministic_policy(member.agent), example)
