"""`python run.py`: one training job inside Hydra (or one trial of a sweep), tracked,
with result.json, a learning curve and the end-of-run summary; bad input as one line."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from abe.agent.agent import resolve_device
from abe.commands.hydra_edge import (
    check_command_line,
    check_runtime,
    fail,
    search_space_args,
    to_config,
    trust_own_callback,
)
from abe.core.errors import ConfigError
from abe.core.plots import learning_curve
from abe.core.result import OBJECTIVE, TrainResult
from abe.core.schema import Config
from abe.tracking import make_tracker
from abe.tracking.mlflow_run import Tracker
from abe.tracking.sweep_parent import parent_run_id
from abe.training.callbacks import Callback, Checkpointer, MetricLogger, ModelExport
from abe.training.loop import TrainingDiverged, train

log = logging.getLogger("abe")

EXIT_TRAINING_FAILED = 1


def run_job(raw: DictConfig) -> float:
    """One job: check the config, train its seeds, return the objective to Hydra.

    With `n_seeds` > 1 the job trains seeds seed, seed+1, ... one after another (each
    in `seed_<n>/` with its own MLflow run) and returns the mean of their final eval
    returns, so a sweep tunes for values that hold up on new seeds.
    """
    try:
        cfg = to_config(raw)
        check_runtime(cfg)
    except ConfigError as ex:
        fail(str(ex))
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    reporter = None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        from abe.sweeps.pruning import TrialReporter

        reporter = TrialReporter.for_this_job(cfg.trainer.total_steps)
    if cfg.n_seeds == 1:
        return _run_seed(cfg, run_dir, reporter)
    values = []
    for seed in range(cfg.seed, cfg.seed + cfg.n_seeds):
        seed_cfg = cfg.with_seed(seed)
        seed_dir = run_dir / f"seed_{seed}"
        _save_config(seed_cfg, seed_dir)  # re-runnable alone
        # Only the first seed reports to the pruner: later seeds would restart its steps.
        values.append(_run_seed(seed_cfg, seed_dir, reporter if seed == cfg.seed else None))
        if reporter is not None and reporter.stop_reason:
            return values[0]
    mean = float(sum(values) / len(values))
    seeds = list(range(cfg.seed, cfg.seed + cfg.n_seeds))
    (run_dir / "result.json").write_text(
        json.dumps({OBJECTIVE: mean, "seeds": seeds, "per_seed": values}, indent=2) + "\n"
    )
    log.info("mean over %d seeds: %.1f (%s)", cfg.n_seeds, mean, ", ".join(f"{v:.1f}" for v in values))
    return mean


def _save_config(cfg: Config, run_dir: Path) -> None:
    import yaml

    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _run_seed(cfg: Config, run_dir: Path, reporter) -> float:
    hydra_cfg = HydraConfig.get()
    try:
        parent = parent_run_id(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
        device = resolve_device(cfg.trainer.device)
        tracker = make_tracker(cfg, run_dir, list(hydra_cfg.overrides.task), device, parent)
    except ConfigError as ex:
        fail(str(ex))
    try:
        result = train_and_track(cfg, run_dir, tracker, callbacks=[reporter] if reporter else [])
    except ConfigError as ex:  # the tracking store failed the run after it started
        fail(str(ex))
    if result.stopped_early and reporter is not None:
        reporter.mark_pruned()
        return reporter.last_value
    return result.eval_return_mean


def _terminate_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def train_and_track(
    cfg: Config, run_dir: Path, tracker: Tracker, resume: dict | None = None, callbacks: Sequence[Callback] = ()
) -> TrainResult:
    """Train (or resume), write result.json and the learning curve, end the tracked run
    with its status, print the summary.

    In a sweep (Hydra multirun) a failed run raises, so the sweeper records the trial
    as failed and goes on; a single run reports the failure as one line.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)  # SIGTERM ends the run as KILLED
    tracking = [MetricLogger(tracker.log_metrics), Checkpointer(lambda: tracker.run_id)]
    if cfg.logger.log_model:
        tracking.append(ModelExport(tracker.log_model))
    finished, status, error = None, "FAILED", None  # `finished`: the result the tracker uploads
    try:
        result = train(cfg, run_dir, [*tracking, *callbacks], resume)
        if result.stopped_early:  # e.g. pruned: no result.json, no summary
            status = "KILLED"
            tracker.set_tags({"optuna_state": "PRUNED", "stopped_early": result.stopped_early})
            log.info("%s: %s", cfg.env.id, result.stopped_early)
            return result
        result.mlflow_run_id = tracker.run_id
        learning_curve(result.evaluations, f"{cfg.env.id}, seed {cfg.seed}", run_dir / "learning_curve.png")
        result.write(run_dir)
        finished, status = result, "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except TrainingDiverged as ex:
        error = str(ex)
        print(f"error: {ex}", file=sys.stderr)
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        raise SystemExit(EXIT_TRAINING_FAILED) from None
    except Exception as ex:
        error = f"{type(ex).__name__}: {ex}"
        raise
    finally:
        tracker.finish(finished, run_dir, status, error)
    log.info(summary(result, run_dir, cfg))
    return result


def launch(main) -> None:
    """`run.py`'s entry: check the command line, run Hydra, end quietly on Ctrl-C."""
    sys.argv = [sys.argv[0], *search_space_args(sys.argv[1:])]
    cfg = check_command_line()
    if cfg is not None and cfg.logger.tracking:
        from abe.tracking.helper import prewarm

        prewarm()  # MLflow imports in a helper process while this one starts training
    trust_own_callback()
    try:
        main()
    except KeyboardInterrupt:
        from abe.tracking.sweep_parent import kill_unfinished_parents

        kill_unfinished_parents()
        print("interrupted: MLflow runs marked KILLED; the last checkpoint is kept", file=sys.stderr)
        raise SystemExit(130) from None


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def summary(result: TrainResult, run_dir: Path, cfg: Config) -> str:
    """The one-screen report printed at the end of a run."""
    curve = "\n".join(
        f"  {e['env_steps']:>12,}  {e[OBJECTIVE]:>10.1f} ± {e['eval/return_std']:<8.1f}" for e in result.evaluations
    )
    lines = [
        f"== {result.env_id} finished: eval return {result.eval_return_mean:.1f} "
        f"± {result.eval_return_std:.1f} ({cfg.trainer.eval_episodes} episodes, mean action) ==",
        f"  {'env steps':>12}  {'eval return':>10}",
        curve,
        f"env steps   {result.env_steps:,} in {result.wall_time_s:.1f} s "
        f"({result.fps:,.0f} steps/s, {result.updates:,} updates)",
        f"run dir     {_shown(run_dir)}",
        f"result      {_shown(run_dir / 'result.json')}",
        f"checkpoint  {_shown(result.checkpoint)}",
    ]
    if result.mlflow_run_id:
        lines.append(f"mlflow run  {result.mlflow_run_id} ({cfg.logger.experiment})")
    return "\n".join(lines)
