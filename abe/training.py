"""The training loop: collect -> GAE -> loss -> step, evaluate every `eval_every` steps.

Tianshou's A2C does the learning (GAE, losses, optimizer step). Collection is abe's
own: one batched forward pass per vector step and plain numpy arrays into Tianshou's
VectorReplayBuffer, instead of Tianshou's Collector and trainer. Why: the design brief
measured Tianshou's own A2C example at ~3,000 env steps/s (HalfCheetah, 16 envs, this
machine kind); the default run here reports 7,100-7,900 in result.json. A side-by-side
benchmark of the two is still to be written (issue 6).
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
from tianshou.data import Batch, VectorReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step, torch_train_mode
from tqdm import tqdm

from abe.agent import Agent, build_agent
from abe.checkpoint import load_into, save_checkpoint
from abe.envs import final_observations, make_vector_env
from abe.evaluation import evaluate
from abe.export import deterministic_policy
from abe.networks import summary_table
from abe.tracking import Tracker

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


class Rollout:
    """Steps the training envs and fills the buffer with n_steps x num_envs transitions."""

    def __init__(self, agent: Agent, envs, n_steps: int, seed: int):
        self.agent, self.envs, self.n_steps = agent, envs, n_steps
        num_envs = envs.num_envs
        self.buffer = VectorReplayBuffer(total_size=n_steps * num_envs, buffer_num=num_envs)
        obs, _ = envs.reset(seed=[seed + i for i in range(num_envs)])
        agent.normalizer.update(obs)
        self.obs = agent.normalizer.normalize(obs)
        self.episode_return = np.zeros(num_envs)

    def snapshot(self) -> dict:
        """The rollout's position: current observations, partial returns, env states."""
        envs = self.envs.get_attr("snapshot")
        return {
            "obs": torch.from_numpy(self.obs.copy()),
            "episode_return": torch.from_numpy(self.episode_return.copy()),
            "envs": None if any(e is None for e in envs) else [_tensors(e) for e in envs],
        }

    def restore(self, snapshot: dict) -> bool:
        """Continue where `snapshot` stopped; False if it holds no env states."""
        self.obs = snapshot["obs"].numpy().copy()
        self.episode_return = snapshot["episode_return"].numpy().copy()
        if snapshot["envs"] is None:
            return False
        self.envs.set_attr("snapshot", [_arrays(e) for e in snapshot["envs"]])
        return True

    @torch.no_grad()
    def collect(self) -> list[float]:
        """Fill the buffer; return the returns of the episodes that ended meanwhile."""
        agent, finished = self.agent, []
        self.buffer.reset()
        with torch_train_mode(agent.algorithm, False):
            for _ in range(self.n_steps):
                dist = agent.policy(Batch(obs=self.obs, info={})).dist
                action = dist.sample().cpu().numpy()
                next_obs, reward, terminated, truncated, info = self.envs.step(
                    agent.policy.map_action(action)
                )
                done = terminated | truncated
                agent.normalizer.update(next_obs)
                real_next = agent.normalizer.normalize(final_observations(next_obs, done, info))
                self.buffer.add(
                    Batch(
                        obs=self.obs, act=action, rew=reward, terminated=terminated,
                        truncated=truncated, obs_next=real_next, info={},
                    )
                )
                self.episode_return += reward
                finished += self.episode_return[done].tolist()
                self.episode_return[done] = 0.0
                self.obs = real_next if not done.any() else agent.normalizer.normalize(next_obs)
        return finished


def _tensors(state: dict) -> dict:
    """numpy arrays -> tensors: weights-only checkpoint loading accepts tensors only."""
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}


def _arrays(state: dict) -> dict:
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


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
    envs = make_vector_env(cfg.env.id, num_envs, cfg.env.backend, env_kwargs)
    eval_envs = make_vector_env(cfg.env.id, cfg.trainer.eval_episodes, "sync", env_kwargs)
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
        log.warning("the checkpoint holds no env states (unknown env type): episodes restart, "
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
            with policy_within_training_step(agent.policy):
                stats = agent.algorithm.update(buffer=rollout.buffer, batch_size=None, repeat=1)
            state.env_steps += steps_per_update
            state.updates += 1
            state.episode_returns += episode_returns
            bar.update(steps_per_update)
            losses = {
                "loss/actor": stats.actor_loss.mean,
                "loss/critic": stats.vf_loss.mean,
                "loss/entropy": stats.ent_loss.mean,
            }
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
                    "train/lr": agent.algorithm.optim._optim.param_groups[0]["lr"],
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
