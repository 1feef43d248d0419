"""The training loop: collect -> update -> evaluate, with callbacks around it.

One loop for a job of K seeds (K = 1: a plain run): every member collects its rollout
(all members' envs stepping at once), then each member's agent takes its own A2C step,
then, every `eval_every` env steps, each member is evaluated and the callbacks run.

Tianshou's A2C object holds the networks, optimizer and return statistics; abe's
Rollout collects into arrays and abe.agent.update runs A2C's update on them, instead
of Tianshou's Collector, buffer and trainer (faster; bench/throughput.py runs both).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from abe.agent.agent import Agent, build_agent
from abe.agent.checkpoint import load_into
from abe.agent.networks import summary_table
from abe.agent.rollout import Rollout, RolloutGroup
from abe.agent.update import a2c_update
from abe.core.errors import TrainingDiverged
from abe.core.result import OBJECTIVE, TrainResult
from abe.core.schema import Config
from abe.envs.vector import eval_backend, make_vector_env
from abe.training.callbacks import Callback, LrDecay, ProgressBar, Schedule
from abe.training.pbt import PopulationBasedTraining
from abe.training.seeding import seed_everything, set_rng_state
from abe.training.trainer import Member, Trainer, TrainingState

log = logging.getLogger(__name__)


def train(cfg: Config, run_dir: Path, callbacks: Sequence[Callback] = (), resume: dict | None = None) -> TrainResult:
    """Train one agent as `cfg` says (`cfg.seed`, one seed), or continue the checkpoint
    `resume` exactly where it stopped."""
    return train_seeds(cfg, [cfg], [run_dir], callbacks, [resume])[0]


def train_seeds(
    cfg: Config,
    configs: Sequence[Config],
    run_dirs: Sequence[Path],
    callbacks: Sequence[Callback] = (),
    resumes: Sequence[dict | None] | None = None,
) -> list[TrainResult]:
    """Train one agent per member config (its seed, lr, gamma: abe.training.pbt.member_configs)
    at once, each exactly as it would train alone (until PBT copies another into it), each
    into its own run dir; `resumes` continues members from their checkpoints. `cfg` is the
    job's. `callbacks` run after every update and evaluation (abe.training.callbacks)."""
    torch.set_num_threads(cfg.trainer.torch_threads)
    resumes = list(resumes or [None] * len(configs))
    with contextlib.ExitStack() as closing:
        members = [
            build_member(member_cfg, run_dir, resume, closing)
            for member_cfg, run_dir, resume in zip(configs, run_dirs, resumes, strict=True)
        ]
        log.info(
            "%s: actor and critic\n%s",
            cfg.env.id,
            summary_table({"actor": members[0].agent.actor, "critic": members[0].agent.critic}),
        )
        trainer = Trainer(cfg, members)
        return _loop(trainer, [*own_callbacks(cfg), ProgressBar(), *callbacks])


def own_callbacks(cfg: Config) -> list[Callback]:
    """What the config asks of training itself: who sets each member's lr and gamma
    (PBT or a replayed schedule), then lr decay, which scales that lr."""
    own: list[Callback] = []
    if cfg.pbt is not None:
        own.append(PopulationBasedTraining(cfg))
    if cfg.schedule:
        own.append(Schedule(cfg.schedule))
    if cfg.algo.lr_decay:
        own.append(LrDecay())
    return own


def build_member(cfg: Config, run_dir: Path, resume: dict | None, closing: contextlib.ExitStack) -> Member:
    """One seed's agent, envs and random stream, made as a run of that seed alone makes them."""
    seed_everything(cfg.seed)
    envs = make_vector_env(cfg.env.id, cfg.trainer.num_envs, cfg.env.backend, cfg.env.kwargs, cfg.env.threads)
    closing.callback(envs.close)
    backend = eval_backend(cfg.env.backend)
    eval_envs = make_vector_env(cfg.env.id, cfg.trainer.eval_episodes, backend, cfg.env.kwargs, cfg.env.threads)
    closing.callback(eval_envs.close)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    generator = torch.Generator()
    generator.set_state(torch.get_rng_state())  # the stream a run of this seed alone draws its actions from
    rollout = Rollout(agent, envs, cfg.algo.n_steps, cfg.seed, generator)
    state = TrainingState(next_eval=cfg.trainer.eval_every)
    if resume is not None:
        state = _restore(resume, agent, rollout, generator)
    return Member(cfg, agent, envs, eval_envs, rollout, generator, state, run_dir)


def _restore(checkpoint: dict, agent: Agent, rollout: Rollout, generator: torch.Generator) -> TrainingState:
    load_into(agent, checkpoint)
    set_rng_state(checkpoint["rng"], generator)
    if not rollout.restore(checkpoint["rollout"]):
        log.warning(
            "the checkpoint holds no env states (EnvPool, or an env abe cannot capture): episodes restart, "
            "so the resumed run will not match an uninterrupted one exactly"
        )
    state = TrainingState(**checkpoint["progress"])
    if state.schedule:  # the optimizer's state brought back its lr; gamma is the algorithm's attribute
        agent.algorithm.gamma = state.schedule[-1][2]
    log.info("resuming at %s env steps", f"{state.env_steps:,}")
    return state


def _loop(trainer: Trainer, callbacks: list[Callback]) -> list[TrainResult]:
    cfg, members = trainer.cfg, trainer.members
    trainer.start = time.perf_counter() - members[0].state.wall_time_s
    for callback in callbacks:
        callback.on_training_start(trainer)
    rollouts = RolloutGroup([m.rollout for m in members])
    try:
        while trainer.env_steps < cfg.trainer.total_steps and trainer.stopped_early is None:
            finished = rollouts.collect()
            losses = [a2c_update(m.agent, m.rollout.batch) for m in members]
            for member, episode_returns in zip(members, finished, strict=True):
                member.state.env_steps += trainer.steps_per_update
                member.state.updates += 1
                member.state.episode_returns += episode_returns
                member.state.episodes += len(episode_returns)
            for callback in callbacks:
                callback.on_update(trainer)
            for member, member_losses in zip(members, losses, strict=True):
                _check_finite(member, member_losses, len(members) > 1)
            if trainer.env_steps >= members[0].state.next_eval or trainer.env_steps >= cfg.trainer.total_steps:
                elapsed = trainer.elapsed()
                records = [m.evaluate(member_losses, elapsed) for m, member_losses in zip(members, losses, strict=True)]
                answers = [callback.on_evaluation(trainer, records) for callback in callbacks]  # all of them run
                reasons = [
                    c.stop_reason or type(c).__name__ for c, go_on in zip(callbacks, answers, strict=True) if not go_on
                ]
                trainer.stopped_early = "; ".join(reasons) if reasons else None
        wall_time = trainer.elapsed()
        for callback in callbacks:
            callback.on_training_end(trainer)
    finally:
        for callback in callbacks:
            callback.close()
    return [_result(trainer, member, wall_time) for member in members]


def _result(trainer: Trainer, member: Member, wall_time: float) -> TrainResult:
    state, final = member.state, member.state.evaluations[-1]
    return TrainResult(
        env_id=member.cfg.env.id,
        seed=member.cfg.seed,
        eval_return_mean=final[OBJECTIVE],
        eval_return_std=final["eval/return_std"],
        env_steps=state.env_steps,
        updates=state.updates,
        wall_time_s=round(wall_time, 3),
        fps=round(state.env_steps / wall_time, 1),
        checkpoint=member.checkpoint_path,
        evaluations=state.evaluations,
        stopped_early=trainer.stopped_early,
        schedule=state.schedule,
        lineage=state.lineage,
    )


def _check_finite(member: Member, losses: dict[str, float], name_seed: bool) -> None:
    weights = torch.nn.utils.parameters_to_vector(member.agent.algorithm.parameters())
    if not (all(np.isfinite(v) for v in losses.values()) and torch.isfinite(weights).all()):
        shown = ", ".join(f"{k}={v:.3g}" for k, v in losses.items())
        seed = f"seed {member.cfg.seed}, " if name_seed else ""
        raise TrainingDiverged(
            f"training diverged at {member.state.env_steps:,} env steps ({seed}non-finite loss or weights; {shown}); "
            "try a lower lr"
        )
