"""What happens around the training loop, as callbacks (the shape of SB3's).

The loop calls `on_update` after every update and `on_evaluation` after every
evaluation; a callback that returns False from `on_evaluation` stops training, with
its `stop_reason`. Every callback runs at every evaluation, so their order does not
decide whether a checkpoint is written before a stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from abe.agent.checkpoint import save_checkpoint
from abe.agent.export import deterministic_policy
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

    def on_evaluation(self, trainer: Trainer, record: dict) -> bool:
        """`record`: the evaluation's metrics and env_steps. False stops training."""
        return True

    def on_training_end(self, trainer: Trainer) -> None:
        """After the last evaluation of a run that ended normally or was stopped."""

    def close(self) -> None:
        """Always, even when training failed: release what the callback holds."""


class LrDecay(Callback):
    """`algo.lr_decay`: lr falls linearly to 0 over the budget (Tianshou's MuJoCo examples)."""

    def on_update(self, trainer: Trainer) -> None:
        remaining = max(0.0, 1.0 - trainer.state.env_steps / trainer.cfg.trainer.total_steps)
        for group in trainer.agent.optimizer.param_groups:
            group["lr"] = trainer.cfg.lr * remaining


class ProgressBar(Callback):
    """A tqdm bar on stderr: env steps, steps/s and the latest eval return."""

    def on_training_start(self, trainer: Trainer) -> None:
        cfg = trainer.cfg
        self.bar = tqdm(
            total=cfg.trainer.total_steps,
            initial=trainer.state.env_steps,
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            disable=not cfg.trainer.progress_bar,
            desc=cfg.env.id,
        )

    def on_update(self, trainer: Trainer) -> None:
        self.bar.update(trainer.steps_per_update)

    def on_evaluation(self, trainer: Trainer, record: dict) -> bool:
        self.bar.set_postfix_str(f"eval {record['eval/return_mean']:.1f}", refresh=True)
        return True

    def close(self) -> None:
        self.bar.close()


class MetricLogger(Callback):
    """Every evaluation's metrics to a tracker, at its env step."""

    def __init__(self, log_metrics: Callable[[dict[str, float], int], None]):
        self.log_metrics = log_metrics

    def on_evaluation(self, trainer: Trainer, record: dict) -> bool:
        self.log_metrics({k: v for k, v in record.items() if k != "env_steps"}, record["env_steps"])
        return True


class Checkpointer(Callback):
    """At every evaluation, `checkpoints/last.pt`: everything `python -m abe resume`
    needs to continue exactly (weights, optimizer, statistics, progress, the rollout's
    position with env states, the random generators) and the MLflow run to go on with."""

    def __init__(self, run_id: Callable[[], str | None] = lambda: None):
        self.run_id = run_id

    def on_evaluation(self, trainer: Trainer, record: dict) -> bool:
        trainer.state.wall_time_s = time.perf_counter() - trainer.start
        save_checkpoint(
            trainer.agent,
            trainer.checkpoint_path,
            trainer.cfg,
            {
                "progress": trainer.state.to_dict(),
                "rollout": trainer.rollout.snapshot(),
                "rng": rng_state(),
                "mlflow_run_id": self.run_id(),
            },
        )
        return True


class ModelExport(Callback):
    """At the end of a run that used its whole budget, the policy as plain torch layers
    (abe.agent.export) to `log_model`."""

    def __init__(self, log_model: Callable[[nn.Module, np.ndarray], None]):
        self.log_model = log_model

    def on_training_end(self, trainer: Trainer) -> None:
        if trainer.stopped_early:
            return
        example = trainer.envs.single_observation_space.sample()[None].astype(np.float32)
        self.log_model(deterministic_policy(trainer.agent), example)
