"""abe's Optuna sweep on Hydra's and Optuna's public APIs (the plugin Hydra finds is
abe.sweeps.optuna_sweeper.AbeOptunaSweeper; this module loads when a sweep starts).

Hydra runs each trial as a job, possibly in another process or machine, so the job
never sees the sweeper's `optuna.Trial`. abe crosses that boundary through the study's
storage: the sweeper passes each job its study, storage and trial id in environment
variables (`hydra.job.env_set`); the job reports to its trial at every evaluation and
marks it PRUNED itself (abe.sweeps.reporter). The sweeper then `tell`s with
`skip_if_finished=True`, so a trial its job already ended keeps its state.

Trials run in `n_jobs` slots, the next asked as soon as one ends (abe.sweeps.slots);
each RUNNING trial records its sweeper and beats in the study, so a sweeper that opens
the study can fail the trials of one that died, on any machine. After the search the
best configurations are re-trained on held-out seeds (abe.sweeps.confirmation).

The options and their defaults: abe.sweeps.optuna_sweeper.AbeOptunaSweeperConf.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from hydra.core.override_parser.types import Quote, QuotedString
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper.config import Direction
from omegaconf import DictConfig

from abe.core.errors import ConfigError, NoTrialFinished, SweepEnded, first_line
from abe.core.processes import ENV_SWEEPER_PID, is_gone, this_process
from abe.core.secrets import mask_secrets
from abe.sweeps.confirmation import (
    best_configurations,
    confirmation_overrides,
    entry,
    held_out_seeds,
    job_value,
    read_returns,
    update_results,
    write_best_command,
    write_confirmation,
    write_results,
)
from abe.sweeps.placement import absolute, stores_for_jobs
from abe.sweeps.pruning import (
    ENV_PRUNE_ON,
    ENV_PRUNER,
    ENV_STORAGE,
    ENV_STUDY,
    ENV_TRIAL,
    FAIL_ATTR,
    PRUNE_ON,
    PRUNERS,
    make_pruner,
)
from abe.sweeps.search_space import SearchSpace, without_keys
from abe.sweeps.slots import Ended, Slots, trial_launcher
from abe.sweeps.study import SETTINGS_ATTR, open_storage, searched_keys, study_settings
from abe.tracking.sweep_parent import end_running_runs

log = logging.getLogger(__name__)


# The sweeper process that asked a trial, as host:pid.
OWNER_ATTR = "abe_sweeper"


def check_options(
    pruner: str,
    pruner_warmup: float,
    pruner_keep: float,
    prune_on: str,
    heartbeat_s: int,
    max_env_steps: int,
) -> None:
    """abe's own sweeper options; run.py checks them before a sweep starts (abe.commands.hydra_edge)."""
    if not _is_count(heartbeat_s):
        raise ConfigError(f"hydra.sweeper.heartbeat_s: got {heartbeat_s!r}; allowed: an integer >= 0 (seconds; 0: off)")
    if not _is_count(max_env_steps):
        raise ConfigError(
            f"hydra.sweeper.max_env_steps: got {max_env_steps!r}; "
            "allowed: an integer >= 0 (env steps of all seeds; 0: no budget)"
        )
    if pruner not in PRUNERS:
        raise ConfigError(f"hydra.sweeper.pruner: got '{pruner}'; allowed: {', '.join(PRUNERS)}")
    if not 0.0 <= pruner_warmup < 1.0:
        raise ConfigError(
            f"hydra.sweeper.pruner_warmup: got {pruner_warmup}; allowed: a share of trainer.total_steps in [0, 1)"
        )
    if not 0.0 < pruner_keep <= 1.0:
        raise ConfigError(
            f"hydra.sweeper.pruner_keep: got {pruner_keep}; allowed: a share of trials in (0, 1], e.g. 0.25"
        )
    if prune_on not in PRUNE_ON:
        raise ConfigError(f"hydra.sweeper.prune_on: got '{prune_on}'; allowed: {', '.join(PRUNE_ON)}")


def _is_count(value) -> bool:
    """An integer >= 0 (YAML's true/false are bools, which Python counts as ints)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _direction(direction) -> str:
    """One direction's name: abe's sweeps optimise one objective."""
    if isinstance(direction, list | tuple) or (hasattr(direction, "__len__") and not isinstance(direction, str)):
        raise ConfigError(
            f"hydra.sweeper.direction: got {list(direction)}; allowed: one of maximize, minimize (abe's jobs "
            "return one objective)"
        )
    return direction.name if isinstance(direction, Direction) else str(direction)


class OptunaSearch:
    """The search behind AbeOptunaSweeper: see the module's docstring."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: DictConfig | None,
        custom_search_space: str | None,
        pruner: str,
        pruner_warmup: float,
        pruner_keep: float,
        prune_on: str,
        fail_running_trials: bool,
        confirm_top: int,
        confirm_seeds: int,
        wait_for_batch: bool,
        heartbeat_s: int,
        max_env_steps: int,
    ) -> None:
        check_options(pruner, pruner_warmup, pruner_keep, prune_on, heartbeat_s, max_env_steps)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # abe says what happens, a line per trial
        if custom_search_space:
            raise ConfigError(
                "hydra.sweeper.custom_search_space: not supported by abe's sweeper; allowed: null (give the "
                "search space in hydra.sweeper.params or on the command line)"
            )
        self.sampler = instantiate(
            sampler, _execution_whitelist_=("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")
        )
        self.direction = _direction(direction)
        self.storage_url = None if storage is None else str(storage)
        self.study_name, self.n_trials, self.n_jobs = study_name, n_trials, n_jobs
        self.max_failure_rate, self.params = max_failure_rate, params
        self.pruner_spec = f"{pruner}:{pruner_warmup}:{pruner_keep}"
        self.prune_on, self.fail_running_trials = prune_on, fail_running_trials
        self.confirm_top, self.confirm_seeds = confirm_top, confirm_seeds
        self.wait_for_batch, self.heartbeat_s, self.max_env_steps = wait_for_batch, heartbeat_s, max_env_steps
        self.slots: Slots | None = None
        self.study: optuna.Study | None = None
        self._asked: list[int] = []  # this sweeper's trials (other sweepers may share the study)
        self.job_env: dict[str, str] = {}  # what every job finds in its environment (setup)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        if self.storage_url is not None:
            self.storage_url = absolute(self.storage_url)  # the same file for jobs in other working dirs
        self.job_env = {**stores_for_jobs(config, self.storage_url), ENV_SWEEPER_PID: str(os.getpid())}
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        self.job_idx = 0

    def sweep(self, arguments: list[str]) -> None:
        try:
            self._sweep(arguments)
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError) as ex:
            if self.slots is not None:  # e.g. a full disk under a sqlite study
                self.slots.stop(self.study)  # its jobs end their runs KILLED
            cause = mask_secrets(first_line(ex.__cause__ or ex)).split(" [SQL:")[0]
            raise SweepEnded(
                f"hydra.sweeper.storage: cannot write to {mask_secrets(self.storage_url)} ({cause}); the study "
                "keeps every trial it recorded: make room (or fix the storage) and run the same command to go on"
            ) from None

    def _sweep(self, arguments: list[str]) -> None:
        if self.storage_url is None and self.pruner_spec != "none":
            log.warning("hydra.sweeper.storage is not set: trials cannot report to the study, so no pruning")
        params = [f"{key}={value}" for key, value in (self.params or {}).items()]
        space = SearchSpace.parse([*params, *arguments])
        self._open_study(space)
        try:
            launch, size = trial_launcher(self.launcher, self.config, self.hydra_context, self.task_function)
            self.slots = Slots(launch, min(size, self.n_jobs), self._heartbeat())
            self._run_trials(space)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (run.py turns it into this)
            if self.slots is not None:
                self.slots.stop(self.study)
            self._fail_unfinished("interrupted")
            raise
        self.job_idx = 1 + max(t.number for t in self.study.get_trials(deepcopy=False))  # confirmation jobs go after
        if not self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            counts = ", ".join(f"{n} {state}" for state, n in self._states().items())
            reason = f"no trial of the sweep finished ({counts}); each trial's MLflow run says why"
            raise NoTrialFinished(reason)
        self._write_results()
        self._after_sweep(self._confirm())

    def _open_study(self, space: SearchSpace) -> None:
        """The study (made, or joined), its settings recorded, abandoned trials failed."""
        sampler = self.sampler
        if isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler:
            grid = space.grid()
            sampler = sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(values) for values in grid.values()))
        if self.storage_url is None:
            self.storage = optuna.storages.InMemoryStorage()
        else:
            self.storage = open_storage(self.storage_url, self.heartbeat_s or None)
        self.study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=sampler,
            pruner=make_pruner(self.pruner_spec),
            direction=self.direction,
            load_if_exists=True,
        )
        self.study_id = self.storage.get_study_id_from_name(self.study.study_name)
        if SETTINGS_ATTR not in self.study.user_attrs:  # what its values mean (checked by run.py: abe.sweeps.study)
            searched = searched_keys(list(self.config.hydra.overrides.task), self.params)
            self.study.set_user_attr(SETTINGS_ATTR, study_settings(self.config, searched))
        if self.fail_running_trials:
            self._fail_abandoned()
        log.info("Study %s in %s; sampler %s", self.study.study_name, self.storage_url, type(sampler).__name__)

    def _id_in_storage(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def _heartbeat(self):
        """How to beat for a running trial: the storage's heartbeat (RDB storages), else none."""
        if not self.heartbeat_s or not isinstance(self.storage, optuna.storages.RDBStorage):
            return None
        # Optuna beats for trials of Study.optimize only and warns about any other use
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        return self.heartbeat_s, lambda number: self.storage.record_heartbeat(self._id_in_storage(number))

    def _start(self, trial: optuna.Trial, space: SearchSpace) -> None:
        self._asked.append(trial.number)
        trial.set_user_attr(OWNER_ATTR, this_process())  # other sweepers leave it alone
        self.slots.start(trial, self._job_overrides(trial, space.suggest(trial)))

    def _job_overrides(self, trial: optuna.Trial, overrides: list[str]) -> list[str]:
        """The trial's overrides, plus what its job must find wherever it runs: its trial in
        the study (none in memory) and the sweep's tracking store (abe.sweeps.placement)."""
        channel = dict(self.job_env)
        if self.storage_url is not None:
            channel |= {
                ENV_STUDY: self.study.study_name,
                ENV_STORAGE: self.storage_url,
                ENV_PRUNER: self.pruner_spec,
                ENV_PRUNE_ON: self.prune_on,
                ENV_TRIAL: str(self._id_in_storage(trial.number)),
            }
        quoted = {k: QuotedString(text=v, quote=Quote.single).with_quotes() for k, v in channel.items()}
        return [*overrides, *(f"+hydra.job.env_set.{k}={v}" for k, v in quoted.items())]

    def _run_trials(self, space: SearchSpace) -> None:
        """Keep every slot busy until n_trials trials were asked and all have ended (with
        wait_for_batch, refill only when every slot is free)."""
        to_ask, ended, failures, last_error = self.n_trials, 0, 0, None
        while to_ask or self.slots.running:
            if not (self.wait_for_batch and self.slots.running):
                while to_ask and self.slots.free and self._affordable():
                    to_ask -= 1
                    self._start(self.study.ask(), space)
            if not self.slots.running:  # trials left to ask, but the budget cannot pay for one
                log.info(
                    "env-step budget: %s of hydra.sweeper.max_env_steps=%s spent; a trial needs %s: no more trials",
                    f"{self._env_steps()[0]:,}",
                    f"{self.max_env_steps:,}",
                    f"{self._trial_budget({}):,}",
                )
                break
            error = self._tell(self.slots.next_ended())
            ended += 1
            if error is not None:
                failures, last_error = failures + 1, error
                if failures / ended > self.max_failure_rate and to_ask:
                    log.error(
                        "%d of %d trials failed (max_failure_rate=%s): no more trials",
                        failures,
                        ended,
                        self.max_failure_rate,
                    )
                    to_ask = 0
        if last_error is not None and failures / ended > self.max_failure_rate:
            raise last_error

    def _trial_budget(self, params: dict) -> int:
        """Env steps of all seeds that a trial with `params` may run (either key may be searched)."""
        return int(params.get("trainer.total_steps", self.config.trainer.total_steps)) * self._seeds(params)

    def _seeds(self, params: dict) -> int:
        return int(params.get("n_seeds", self.config.get("n_seeds", 1)))

    def _env_steps(self) -> tuple[int, int]:
        """This sweep's env steps, all seeds: run by its ended trials (a pruned or failed one
        up to its last evaluation), and reserved by its running ones (their whole budget)."""
        asked, ran = set(self._asked), 0
        for t in self.study.get_trials(deepcopy=False):
            if t.number in asked and t.state == optuna.trial.TrialState.COMPLETE:
                ran += self._trial_budget(t.params)
            elif t.number in asked and t.state.is_finished():
                ran += self._seeds(t.params) * (t.last_step or 0)  # steps per seed at its last report
        return ran, sum(self._trial_budget(t.params) for t in self.slots.running.values())

    def _affordable(self) -> bool:
        """Whether one more trial fits in the env-step budget (always, without one)."""
        if not self.max_env_steps:
            return True
        return sum(self._env_steps()) + self._trial_budget({}) <= self.max_env_steps

    def _tell_study(self, trial: optuna.Trial | int, **kwargs) -> None:
        """study.tell, leaving a trial its job already ended as it is; one progress line."""
        self.study.tell(trial, skip_if_finished=True, **kwargs)
        log.info(progress_line(self.study))

    def _tell(self, ended: Ended) -> Exception | None:
        """Records a trial's end in the study; returns its error when it failed."""
        try:
            if ended.error is not None:
                raise ended.error
            value = float(job_value(ended.job))
        except Exception as ex:
            reason = f"{type(ex).__name__}: {first_line(ex)}"
            with contextlib.suppress(RuntimeError):  # a trial the job already ended keeps its state
                ended.trial.set_user_attr(FAIL_ATTR, reason)
            self._tell_study(ended.trial, state=optuna.trial.TrialState.FAIL)
            log.warning("trial #%d failed: %s", ended.trial.number, reason)
            job_dir = Path(self.config.hydra.sweep.dir) / str(ended.trial.number)  # hydra.sweep.subdir: the number
            end_running_runs(self.config, job_dir, f"trial #{ended.trial.number} failed: {reason}")
            return ex
        try:
            self._tell_study(ended.trial, values=[value])
        except RuntimeError as ex:  # the grid sampler stops the study when its grid is done
            if "Study.stop" not in str(ex):
                raise
        return None

    def _write_results(self) -> None:
        best = self.study.best_trial
        # best_params / best_value: the search's best on its tuning seeds (hydra-optuna-sweeper's
        # keys); `confirmed_best` and `best_command` below say what held-out seeds chose.
        results = {"name": "optuna", "best_params": best.params, "best_value": best.value, "best_trial": best.number}
        results["env_steps"] = self._env_steps()[0]  # what this sweep's trials ran, all seeds
        write_results(Path(self.config.hydra.sweep.dir), results)
        log.info("best of the study: trial #%d, %s: %s", best.number, best.params, best.value)

    def _states(self) -> dict[str, int]:
        states = [t.state.name for t in self.study.get_trials(deepcopy=False)]
        return {state: states.count(state) for state in sorted(set(states))}

    def _fail_unfinished(self, why: str) -> None:
        """An interrupted sweep leaves none of its trials RUNNING: they become FAIL."""
        if self.study is None:
            return
        running = {t.number for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
        mine = sorted(running & set(self._asked))
        for number in mine:
            self.study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        if mine:
            log.warning("%s: marked trial(s) %s FAIL", why, mine)

    def _fail_abandoned(self) -> None:
        """RUNNING trials left by a sweeper that died: one that stopped its heartbeat (on any
        machine), or one on this machine whose process is gone."""
        study = self.study

        def running() -> list[optuna.trial.FrozenTrial]:
            return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))

        before = len(running())
        if isinstance(self.storage, optuna.storages.RDBStorage):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        for trial in running():
            if is_gone(trial.user_attrs.get(OWNER_ATTR)):
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        if before - len(running()):
            log.warning("marked %d trial(s) of a stopped sweeper FAIL", before - len(running()))

    def _fixed_overrides(self, params: dict, drop: tuple[str, ...] = ()) -> list[str]:
        """The command line's overrides that the trials did not search over, less `drop`."""
        return without_keys(list(self.config.hydra.overrides.task), (*params, *drop))

    def _confirm(self) -> list[dict]:
        """Re-train the best configurations on held-out seeds, one K-seed job each."""
        trials = best_configurations(self.study, self.confirm_top) if self.confirm_top else []
        if not trials:
            return []
        seeds = held_out_seeds(int(self.config.get("seed", 0)), self.confirm_seeds)
        log.info("confirming the best %d configuration(s) on held-out seeds %d-%d", len(trials), seeds[0], seeds[-1])
        overrides = [
            tuple(confirmation_overrides(self._fixed_overrides(t.params, ("seed", "n_seeds")), t, seeds, rank))
            for rank, t in enumerate(trials, 1)
        ]
        returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
        self.job_idx += len(returns)
        rows = []
        for trial, job in zip(trials, returns, strict=True):
            try:
                job_value(job)
                returns = read_returns(Path(job.hydra_cfg.hydra.runtime.output_dir))
                rows.append(entry(trial.number, trial.params, trial.value, seeds, returns))
            except Exception as ex:
                log.warning("confirmation of trial #%d failed: %s", trial.number, first_line(ex))
        rows.sort(key=lambda row: row["mean"], reverse=True)
        write_confirmation(rows, Path(self.config.hydra.sweep.dir))
        for rank, row in enumerate(rows, 1):
            log.info(
                "held-out #%d: trial #%d %s: mean %.1f, IQM %.1f, 95%% interval [%.1f, %.1f] (tuning value %.1f)",
                rank,
                row["trial"],
                row["params"],
                row["mean"],
                row["iqm"],
                *row["ci95"],
                row["tuning_value"],
            )
        return rows

    def _after_sweep(self, confirmation: list[dict]) -> None:
        sweep_dir = Path(self.config.hydra.sweep.dir)
        write_study_plots(self.study, sweep_dir)
        completed = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not completed:
            return
        if confirmation:  # the winner on held-out seeds
            winner = confirmation[0]
            params, what = (
                winner["params"],
                f"the confirmed best (#{winner['trial']}, held-out mean {winner['mean']:.1f})",
            )
            update_results(
                sweep_dir, confirmed_best={k: winner[k] for k in ("trial", "params", "mean", "iqm", "ci95", "seeds")}
            )
        else:
            best = self.study.best_trial
            params, what = best.params, f"the search's best trial (#{best.number}, {best.value:.1f})"
        fixed = self._fixed_overrides(params, ("hparams_search",))  # a single run
        write_best_command(sweep_dir, [*fixed, *(f"{k}={v}" for k, v in params.items())], what)


def progress_line(study: optuna.Study) -> str:
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    count = {s: sum(t.state == s for t in trials) for s in (states.COMPLETE, states.PRUNED, states.FAIL)}
    line = (
        f"trials: {len(trials)} ({count[states.COMPLETE]} complete, {count[states.PRUNED]} pruned, "
        f"{count[states.FAIL]} failed)"
    )
    if count[states.COMPLETE]:
        best = study.best_trial
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
        line += f"; best so far {best.value:.1f} (#{best.number}: {params})"
    return line


def write_study_plots(study: optuna.Study, sweep_dir: Path) -> None:
    """Optuna's optimisation history, parameter importances and lr x gamma contour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    params = sorted({p for t in complete for p in t.params})
    plots = {"optuna_history.png": lambda: ovm.plot_optimization_history(study)}
    if len(complete) >= 2 and len(params) >= 2:
        plots["optuna_importances.png"] = lambda: ovm.plot_param_importances(study)
    if len(complete) >= 2 and {"lr", "gamma"} <= set(params):
        plots["optuna_contour_lr_gamma.png"] = lambda: ovm.plot_contour(study, params=["lr", "gamma"])
    for name, plot in plots.items():
        try:
            axes = plot()
        except (ValueError, RuntimeError) as ex:  # too few distinct values for this plot
            log.info("skipped %s: %s", name, ex)
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figure.savefig(sweep_dir / name)
        plt.close(figure)
