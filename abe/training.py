"""The training loop: collect -> GAE -> loss -> step, evaluate every `eval_every` steps.

Tianshou's A2C object holds the networks, optimizer and return statistics; abe's
Rollout (abe/rollout.py) collects into arrays and abe/update.py runs A2C's update on
them, instead of Tianshou's Collector, buffer and trainer. Why: speed, measured side
by side in bench/throughput.py (README "Benchmarks").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from abe.agent import Agent, build_agent
from abe.checkpoint import load_into, save_checkpoint
from abe.envs import make_vector_env
from abe.evaluation import evaluate
from abe.export import deterministic_policy
from abe.networks import summary_table
from abe.rollout import Rollout
from abe.tracking import Tracker
from abe.update import a2c_update

log = logging.getLogger(__name__)


@dataclass
class TrainingState:
    """What the loop carries between updates; saved in every checkpoint."""

    env_steps: int = 0
    updates: int = 0
    next_eval: int = 0
    wall_time_s: float = 0.0  # spent before this process (resumed runs)
    episode_returns: list[float] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**asdict(self), "episode_returns": self.episode_returns[-100:]}


def seed_everything(seed: int) -> None:
    np.random.seed(seed)  # Tianshou shuffles batches with numpy's global RNG
    torch.manual_seed(seed)


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


class EarlyStop(Exception):
    """Raised by an `on_eval` hook to end training early on purpose (e.g. pruning)."""


class TrainingDiverged(FloatingPointError):
    """A loss or a network weight became NaN or infinite."""


def _check_finite(agent: Agent, losses: dict[str, float], env_steps: int) -> None:
    weights = torch.nn.utils.parameters_to_vector(agent.algorithm.parameters())
    if not (all(np.isfinite(v) for v in losses.values()) and torch.isfinite(weights).all()):
        shown = ", ".join(f"{k}={v:.3g}" for k, v in losses.items())
        raise TrainingDiverged(
            f"training diverged at {env_steps:,} env steps (non-finite loss or weights; {shown}); try a lower lr"
        )


def train(cfg: DictConfig, run_dir: Path, tracker: Tracker, resume: dict | None = None,
          on_eval: Callable[[dict], None] | None = None) -> dict:
    """Train one agent as `cfg` says, or continue the checkpoint `resume` exactly where
    it stopped; return the result written to result.json. `on_eval(record)` runs
    after every evaluation with its metrics and env_steps, and may raise EarlyStop."""
    torch.set_num_threads(cfg.trainer.torch_threads)
    seed_everything(cfg.seed)
    num_envs, n_steps = cfg.trainer.num_envs, cfg.algo.n_steps
    env_kwargs = dict(cfg.env.kwargs)
    threads = cfg.env.get("threads", 0)
    envs = make_vector_env(cfg.env.id, num_envs, cfg.env.backend, env_kwargs, threads)
    # Evaluation episodes run side by side on EnvPool too when training does (seeded
    # start states either way); async processes would not pay off for them.
    eval_backend = "envpool" if cfg.env.backend == "envpool" else "sync"
    eval_envs = make_vector_env(cfg.env.id, cfg.trainer.eval_episodes, eval_backend, env_kwargs, threads)
    try:
        agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
        log.info(
            "%s: actor and critic\n%s",
            cfg.env.id,
            summary_table({"actor": agent.actor, "critic": agent.critic}),
        )
        rollout = Rollout(agent, envs, n_steps, cfg.seed)
        state = TrainingState(next_eval=cfg.trainer.eval_every)
        if resume is not None:
            state = _restore(resume, agent, rollout)
        result = _loop(cfg, agent, rollout, eval_envs, run_dir, tracker, state, on_eval)
        if cfg.logger.get("log_model", False):
            example = envs.single_observation_space.sample()[None].astype(np.float32)
            tracker.log_model(deterministic_policy(agent), example)
        return result
    finally:
        envs.close()
        eval_envs.close()


def _restore(checkpoint: dict, agent: Agent, rollout: Rollout) -> TrainingState:
    load_into(agent, checkpoint)
    set_rng_state(checkpoint["rng"])
    if not rollout.restore(checkpoint["rollout"]):
        log.warning("the checkpoint holds no env states (EnvPool, or an env abe cannot capture): episodes restart, "
                    "so the resumed run will not match an uninterrupted one exactly")
    state = TrainingState(**checkpoint["progress"])
    log.info("resuming at %s env steps", f"{state.env_steps:,}")
    return state


def _loop(cfg, agent: Agent, rollout: Rollout, eval_envs, run_dir: Path, tracker: Tracker,
          state: TrainingState, on_eval) -> dict:
    steps_per_update = cfg.algo.n_steps * cfg.trainer.num_envs
    checkpoint = run_dir / "checkpoints" / "last.pt"
    start = time.perf_counter() - state.wall_time_s
    bar = tqdm(
        total=cfg.trainer.total_steps, initial=state.env_steps, unit="step", unit_scale=True,
        dynamic_ncols=True, disable=not cfg.trainer.progress_bar, desc=cfg.env.id,
    )
    with bar:
        while state.env_steps < cfg.trainer.total_steps:
            episode_returns = rollout.collect()
            losses = a2c_update(agent, rollout.batch)
            state.env_steps += steps_per_update
            if cfg.algo.get("lr_decay", False):
                remaining = max(0.0, 1.0 - state.env_steps / cfg.trainer.total_steps)
                for group in agent.optimizer.param_groups:
                    group["lr"] = cfg.lr * remaining
            state.updates += 1
            state.episode_returns += episode_returns
            bar.update(steps_per_update)
            _check_finite(agent, losses, state.env_steps)
            last = state.env_steps >= cfg.trainer.total_steps
            if state.env_steps >= state.next_eval or last:
                state.next_eval += cfg.trainer.eval_every
                elapsed = time.perf_counter() - start
                returns = evaluate(agent, eval_envs, cfg.seed)
                record = {
                    "env_steps": state.env_steps,
                    "eval/return_mean": float(returns.mean()),
                    "eval/return_std": float(returns.std()),
                    "perf/fps": state.env_steps / elapsed,
                    "train/lr": agent.optimizer.param_groups[0]["lr"],
                    **losses,
                }
                if state.episode_returns:
                    record["train/episode_return"] = float(np.mean(state.episode_returns[-20:]))
                state.evaluations.append(record)
                tracker.log_metrics({k: v for k, v in record.items() if k != "env_steps"}, state.env_steps)
                state.wall_time_s = time.perf_counter() - start
                save_checkpoint(agent, checkpoint, cfg, {
                    "progress": state.to_dict(), "rollout": rollout.snapshot(), "rng": rng_state(),
                    "mlflow_run_id": tracker.run_id,
                })
                bar.set_postfix_str(f"eval {record['eval/return_mean']:.1f}", refresh=True)
                if on_eval is not None:
                    on_eval(record)
    wall_time = time.perf_counter() - start
    final = state.evaluations[-1]
    return {
        "eval/return_mean": final["eval/return_mean"],
        "eval/return_std": final["eval/return_std"],
        "env_steps": state.env_steps,
        "updates": state.updates,
        "wall_time_s": round(wall_time, 3),
        "fps": round(state.env_steps / wall_time, 1),
        "env_id": cfg.env.id,
        "seed": cfg.seed,
        "checkpoint": str(checkpoint),
        "evaluations": state.evaluations,
    }


def write_result(result: dict, run_dir: Path) -> Path:
    path = run_dir / "result.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
