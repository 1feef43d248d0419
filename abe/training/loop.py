"""The training loop: collect -> update -> evaluate, with callbacks around it.

Tianshou's A2C object holds the networks, optimizer and return statistics; abe's
Rollout collects into arrays and abe.agent.update runs A2C's update on them, instead
of Tianshou's Collector, buffer and trainer (faster; bench/throughput.py runs both).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from abe.agent.agent import Agent, build_agent
from abe.agent.checkpoint import load_into
from abe.agent.networks import summary_table
from abe.agent.rollout import Rollout
from abe.agent.update import a2c_update
from abe.core.result import OBJECTIVE, TrainResult
from abe.core.schema import Config
from abe.envs.vector import make_vector_env
from abe.training.callbacks import Callback, LrDecay, ProgressBar
from abe.training.seeding import seed_everything, set_rng_state
from abe.training.trainer import Trainer, TrainingState

log = logging.getLogger(__name__)


class TrainingDiverged(FloatingPointError):
    """A loss or a network weight became NaN or infinite."""


def train(cfg: Config, run_dir: Path, callbacks: Sequence[Callback] = (), resume: dict | None = None) -> TrainResult:
    """Train one agent as `cfg` says, or continue the checkpoint `resume` exactly where
    it stopped. `callbacks` run after every update and evaluation (abe.training.callbacks)."""
    torch.set_num_threads(cfg.trainer.torch_threads)
    seed_everything(cfg.seed)
    envs = make_vector_env(cfg.env.id, cfg.trainer.num_envs, cfg.env.backend, cfg.env.kwargs, cfg.env.threads)
    # Evaluation episodes run side by side on EnvPool too when training does (seeded
    # start states either way); async processes would not pay off for them.
    eval_backend = "envpool" if cfg.env.backend == "envpool" else "sync"
    eval_envs = make_vector_env(cfg.env.id, cfg.trainer.eval_episodes, eval_backend, cfg.env.kwargs, cfg.env.threads)
    try:
        agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
        log.info("%s: actor and critic\n%s", cfg.env.id, summary_table({"actor": agent.actor, "critic": agent.critic}))
        rollout = Rollout(agent, envs, cfg.algo.n_steps, cfg.seed)
        state = TrainingState(next_eval=cfg.trainer.eval_every)
        if resume is not None:
            state = _restore(resume, agent, rollout)
        trainer = Trainer(cfg, agent, envs, eval_envs, rollout, state, run_dir / "checkpoints" / "last.pt")
        own = [LrDecay()] if cfg.algo.lr_decay else []
        return _loop(trainer, [*own, ProgressBar(), *callbacks])
    finally:
        envs.close()
        eval_envs.close()


def _restore(checkpoint: dict, agent: Agent, rollout: Rollout) -> TrainingState:
    load_into(agent, checkpoint)
    set_rng_state(checkpoint["rng"])
    if not rollout.restore(checkpoint["rollout"]):
        log.warning(
            "the checkpoint holds no env states (EnvPool, or an env abe cannot capture): episodes restart, "
            "so the resumed run will not match an uninterrupted one exactly"
        )
    state = TrainingState(**checkpoint["progress"])
    log.info("resuming at %s env steps", f"{state.env_steps:,}")
    return state


def _loop(trainer: Trainer, callbacks: list[Callback]) -> TrainResult:
    cfg, state = trainer.cfg, trainer.state
    trainer.start = time.perf_counter() - state.wall_time_s
    for callback in callbacks:
        callback.on_training_start(trainer)
    try:
        while state.env_steps < cfg.trainer.total_steps and trainer.stopped_early is None:
            episode_returns = trainer.rollout.collect()
            losses = a2c_update(trainer.agent, trainer.rollout.batch)
            state.env_steps += trainer.steps_per_update
            state.updates += 1
            state.episode_returns += episode_returns
            for callback in callbacks:
                callback.on_update(trainer)
            _check_finite(trainer.agent, losses, state.env_steps)
            if state.env_steps >= state.next_eval or state.env_steps >= cfg.trainer.total_steps:
                record = trainer.evaluate(losses)
                answers = [callback.on_evaluation(trainer, record) for callback in callbacks]  # all of them run
                reasons = [
                    c.stop_reason or type(c).__name__ for c, go_on in zip(callbacks, answers, strict=True) if not go_on
                ]
                trainer.stopped_early = "; ".join(reasons) if reasons else None
        wall_time = time.perf_counter() - trainer.start
        for callback in callbacks:
            callback.on_training_end(trainer)
    finally:
        for callback in callbacks:
            callback.close()
    final = state.evaluations[-1]
    return TrainResult(
        env_id=cfg.env.id,
        seed=cfg.seed,
        eval_return_mean=final[OBJECTIVE],
        eval_return_std=final["eval/return_std"],
        env_steps=state.env_steps,
        updates=state.updates,
        wall_time_s=round(wall_time, 3),
        fps=round(state.env_steps / wall_time, 1),
        checkpoint=trainer.checkpoint_path,
        evaluations=state.evaluations,
        stopped_early=trainer.stopped_early,
    )


def _check_finite(agent: Agent, losses: dict[str, float], env_steps: int) -> None:
    weights = torch.nn.utils.parameters_to_vector(agent.algorithm.parameters())
    if not (all(np.isfinite(v) for v in losses.values()) and torch.isfinite(weights).all()):
        shown = ", ".join(f"{k}={v:.3g}" for k, v in losses.items())
        raise TrainingDiverged(
            f"training diverged at {env_steps:,} env steps (non-finite loss or weights; {shown}); try a lower lr"
        )
