"""`python run.py`: one training job inside Hydra (or one trial of a sweep), tracked,
with result.json, a learning curve and the end-of-run summary; bad input as one line."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from abe.agent.agent import resolve_device
from abe.commands.hydra_edge import check_runtime, fail, terminate_as_interrupt, to_config, write_rerun_config
from abe.core import stats
from abe.core.errors import ConfigError, TrainingDiverged, TrialEndedElsewhere
from abe.core.files import WriteFailed
from abe.core.plots import learning_curve, seeds_curve
from abe.core.processes import ENV_SWEEPER_PID, stop_when_orphaned
from abe.core.result import JOB_OBJECTIVE, OBJECTIVE, JobResult, TrainResult
from abe.core.schema import Config
from abe.tracking import make_tracker
from abe.tracking.sweep_parent import parent_run_id
from abe.training.callbacks import Callback, Checkpointer, MetricLogger, ModelExport, SteppingTag
from abe.training.loop import train_seeds
from abe.training.pbt import member_configs

log = logging.getLogger("abe")

EXIT_TRAINING_FAILED = 1


def run_job(raw: DictConfig) -> float:
    """One job: check the config, train its seeds together, return the objective to Hydra.

    With `n_seeds` = K > 1 the job trains seeds seed, ..., seed+K-1 at once, each in
    `seed_<n>/` with its own MLflow run nested under the job's, and returns
    `seed_statistic` over their final eval returns, so a sweep tunes for values that hold
    up on new seeds.
    """
    try:
        return _run_job(raw)
    except ConfigError as ex:  # a bad value, or a tracking store that refused the run
        fail(str(ex))


def _run_job(raw: DictConfig) -> float:
    cfg = to_config(raw)
    check_runtime(cfg)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.output_subdir is not None:  # where Hydra saved the job's config
        write_rerun_config(run_dir / hydra_cfg.output_subdir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    reporter = None
    if multirun:
        from abe.sweeps.reporter import TrialReporter

        reporter = TrialReporter.for_this_job(cfg.trainer.total_steps, cfg.seed_statistic)
    parent = parent_run_id(hydra_cfg.sweep.dir) if multirun else None
    job = Job(cfg, run_dir, list(hydra_cfg.overrides.task), parent)
    done = threading.Event()  # a joblib job whose sweeper was killed outright stops itself
    sweeper = os.environ.get(ENV_SWEEPER_PID) if multirun else None
    if sweeper is not None:
        failed = (lambda: reporter.mark_failed(f"its sweeper (pid {sweeper}) died")) if reporter else None
        stop_when_orphaned(int(sweeper), done, failed)
    try:
        value = job.run(callbacks=[reporter] if reporter else [])
    finally:
        done.set()
    if job.stopped_early and reporter is not None:
        reporter.mark_pruned()
        return reporter.last_value
    return value


def _save_config(cfg: Config, run_dir: Path) -> None:
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "config.yaml").write_text(cfg.to_yaml())
    write_rerun_config(run_dir / ".hydra")


class Job:
    """A job's seeds, their run dirs and trackers: one seed trains in the run dir itself;
    K seeds each in `seed_<n>/`, their MLflow runs nested under the job's own run."""

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        overrides: list[str],
        parent: str | None,
        resumes: list[dict | None] | None = None,
        resume_run_ids: list[str | None] | None = None,
    ):
        self.cfg, self.run_dir, self.stopped_early = cfg, run_dir, None
        self.configs = member_configs(cfg)  # each seed's config (under PBT, with its starting lr and gamma)
        self.seeds = [c.seed for c in self.configs]
        self.resumes = resumes or [None] * len(self.seeds)
        device = resolve_device(cfg.trainer.device)
        resume_ids = resume_run_ids or [None] * len(self.seeds)
        self.job_tracker = None
        if len(self.seeds) > 1:
            self.run_dirs = [run_dir / f"seed_{seed}" for seed in self.seeds]
            for member_cfg, seed_dir in zip(self.configs, self.run_dirs, strict=True):
                _save_config(member_cfg, seed_dir)  # each seed re-runnable alone
            saved_id = run_dir / JOB_RUN_ID_FILE
            job_run_id = saved_id.read_text().strip() if resumes and saved_id.exists() else None
            self.job_tracker = make_tracker(cfg, run_dir, overrides, device, parent, job_run_id)
            parent = self.job_tracker.run_id
            if parent:
                (run_dir / JOB_RUN_ID_FILE).write_text(parent)  # for `python -m abe resume`
        else:
            self.run_dirs = [run_dir]
        self.trackers = [
            make_tracker(member_cfg, seed_dir, overrides, device, parent, resume_id)
            for member_cfg, seed_dir, resume_id in zip(self.configs, self.run_dirs, resume_ids, strict=True)
        ]

    def run(self, callbacks: Sequence[Callback] = ()) -> float:
        """Train, write result.json and learning curves, end every tracked run with its
        status, print the summary; the job's objective.

        In a sweep (Hydra multirun) a failed run raises, so the sweeper records the trial
        as failed and goes on; a single run reports the failure as one line.
        """
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, terminate_as_interrupt)  # SIGTERM ends the runs as KILLED
        self.finished: list = [None] * len(self.trackers)  # what each tracker uploads: a finished run's result
        self.job_result, status, error = None, "FAILED", None
        try:
            results = train_seeds(self.cfg, self.configs, self.run_dirs, [*self._tracking(), *callbacks], self.resumes)
            if results[0].stopped_early:  # e.g. pruned: no result.json, no summary
                status = "KILLED"
                self._stopped(results[0].stopped_early)
                return float("nan")
            self._write(results)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except TrialEndedElsewhere as ex:  # stopped from outside, as an interrupt is; the sweeper goes on
            status, error = "KILLED", str(ex)
            raise
        except (TrainingDiverged, WriteFailed) as ex:  # one line: the reason, or the path and what is wrong
            error = str(ex)
            _training_failed(ex)
        except Exception as ex:
            error = f"{type(ex).__name__}: {ex}"
            raise
        finally:
            unwritten = self._end_tracking(status, error)
        if unwritten is not None:  # the run's journal could not be written: its run ended FAILED
            _training_failed(unwritten)
        for result, run_dir in zip(results, self.run_dirs, strict=True):
            log.info(summary(result, run_dir, self.cfg))
        if self.job_result is None:
            return results[0].eval_return_mean
        log.info(job_summary(self.job_result, self.run_dir, self.cfg))
        return self.job_result.objective

    def _end_tracking(self, status: str, error: str | None) -> WriteFailed | None:
        """End every tracked run with `status`; the first file a tracker could not write."""
        unwritten = None
        ends = [*zip(self.trackers, self.finished, self.run_dirs, strict=True)]
        if self.job_tracker is not None:
            ends.append((self.job_tracker, self.job_result, self.run_dir))
        for tracker, result, run_dir in ends:
            try:
                tracker.finish(result, run_dir, status, error)
            except WriteFailed as ex:
                unwritten = unwritten or ex
        return unwritten

    def _tracking(self) -> list[Callback]:
        """Each seed's metrics, checkpoint and model to its own run; the statistics to the job's."""
        tracking: list[Callback] = []
        for member, tracker in enumerate(self.trackers):
            tracking += [MetricLogger(tracker.log_metrics, member), Checkpointer(lambda t=tracker: t.run_id, member)]
            tracking.append(SteppingTag(tracker.set_tags, member))
            if self.cfg.logger.log_model:
                tracking.append(ModelExport(tracker.log_model, member))
        if self.job_tracker is not None:
            tracking.append(JobMetrics(self.job_tracker.log_metrics, self.cfg.seed_statistic))
        return tracking

    def _stopped(self, reason: str) -> None:
        self.stopped_early = reason
        for tracker in [*self.trackers, *filter(None, [self.job_tracker])]:
            tracker.set_tags({"optuna_state": "PRUNED", "stopped_early": reason})
        log.info("%s: %s", self.cfg.env.id, reason)

    def _write(self, results: list[TrainResult]) -> None:
        """result.json and the learning curve of each seed, and of the job."""
        env_id = self.cfg.env.id
        for i, (result, tracker, run_dir) in enumerate(zip(results, self.trackers, self.run_dirs, strict=True)):
            result.mlflow_run_id = tracker.run_id
            learning_curve(result.evaluations, f"{env_id}, seed {result.seed}", run_dir / "learning_curve.png")
            result.write(run_dir)
            self.finished[i] = result
        if self.job_tracker is not None:
            self.job_result = _job_result(self.cfg, results, self.job_tracker.run_id)
            seeds_curve([r.evaluations for r in results], self.seeds, env_id, self.run_dir / "learning_curve.png")
            self.job_result.write(self.run_dir)


JOB_RUN_ID_FILE = "mlflow_job_run_id"


def _training_failed(ex: Exception) -> None:
    """One line on stderr; in a sweep the exception goes on to the sweeper, which records
    the trial as failed and goes on; a single run exits."""
    print(f"error: {ex}", file=sys.stderr)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ex
    raise SystemExit(EXIT_TRAINING_FAILED) from None


def _job_result(cfg: Config, results: list[TrainResult], run_id: str | None) -> JobResult:
    returns = [r.eval_return_mean for r in results]
    return JobResult(
        statistic=cfg.seed_statistic,
        objective=stats.summarise(returns, cfg.seed_statistic),
        seeds=[r.seed for r in results],
        per_seed=returns,
        mean=stats.mean(returns),
        iqm=stats.iqm(returns),
        ci95=stats.interval(returns),
        mlflow_run_id=run_id,
    )


class JobMetrics(Callback):
    """The job's own MLflow run: at each evaluation, the statistics over its seeds."""

    def __init__(self, log_metrics, statistic: str):
        self.log_metrics, self.statistic = log_metrics, statistic

    def on_evaluation(self, trainer, records: list[dict]) -> bool:
        returns = [r[OBJECTIVE] for r in records]
        metrics = {
            JOB_OBJECTIVE: stats.summarise(returns, self.statistic),
            OBJECTIVE: stats.mean(returns),
            "eval/return_iqm": stats.iqm(returns),
        }
        self.log_metrics(metrics, records[0]["env_steps"])
        return True


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


def job_summary(job: JobResult, run_dir: Path, cfg: Config) -> str:
    """The report of a K-seed job, after its seeds' own."""
    low, high = job.ci95
    lines = [
        f"== {cfg.env.id}, {len(job.seeds)} seeds: {job.statistic} {job.objective:.1f} (the objective) ==",
        "  seed  final eval return",
        *(f"  {seed:>4}  {value:>10.1f}" for seed, value in zip(job.seeds, job.per_seed, strict=True)),
        f"mean {job.mean:.1f}, IQM {job.iqm:.1f}, 95% bootstrap interval of the mean [{low:.1f}, {high:.1f}]",
        f"run dir     {_shown(run_dir)}",
        f"result      {_shown(run_dir / 'result.json')}",
    ]
    if job.mlflow_run_id:
        lines.append(f"mlflow run  {job.mlflow_run_id} ({cfg.logger.experiment}; one nested run per seed)")
    return "\n".join(lines)
