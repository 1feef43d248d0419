"""hydra-optuna-sweeper with pruning, no batch barrier, abandoned-trial cleanup,
confirmation on held-out seeds, progress and plots.

Hydra runs each trial as a job, possibly in another process (joblib launcher), so
the job never sees the sweeper's `optuna.Trial`. abe crosses that boundary through
the study's storage: the sweeper passes each job its trial id in environment
variables (`hydra.job.env_set`); the job reports to the same study and marks its trial
PRUNED itself (abe.sweeps.pruning). The sweeper then `tell`s with
`skip_if_finished=True`, so trials that their job already finished are left as they are.

Trials run in `n_jobs` slots, the next asked as soon as one ends (abe.sweeps.slots);
each RUNNING trial records its sweeper and beats in the study, so a sweeper that opens
the study can fail the trials of one that died, on any machine.

Selected with `hydra/sweeper=abe_optuna` (what `hparams_search=lr_gamma` does); it
takes every option of hydra-optuna-sweeper plus those of AbeOptunaSweeperConf.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import shlex
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import optuna
import yaml
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Quote, QuotedString
from hydra_plugins.hydra_optuna_sweeper import _impl
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

from abe.core.errors import ConfigError, first_line
from abe.sweeps.confirmation import (
    best_configurations,
    confirmation_overrides,
    entry,
    held_out_seeds,
    read_returns,
    write_confirmation,
)
from abe.sweeps.pruning import (
    ENV_PRUNE_ON,
    ENV_PRUNER,
    ENV_STORAGE,
    ENV_STUDY,
    ENV_TRIAL,
    PRUNE_ON,
    PRUNERS,
    make_pruner,
)
from abe.sweeps.slots import Ended, Slots, trial_launcher
from abe.sweeps.study import SETTINGS_ATTR, open_storage, searched_keys, study_settings

log = logging.getLogger(__name__)

_create_study = optuna.create_study  # the original, while sweep() patches the module's


@dataclass
class AbeOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "abe.sweeps.optuna_sweeper.AbeOptunaSweeper"
    pruner: str = "median"  # median | percentile | hyperband | none
    pruner_warmup: float = 0.25  # fraction of trainer.total_steps before median/percentile pruning may stop a trial
    pruner_keep: float = 0.25  # percentile pruner: the share of trials that goes on at each evaluation
    # What trials are compared on while they run. The final objective stays the eval
    # return; the stochastic training return tracks learning more steadily (bench/).
    prune_on: str = "train/episode_return"
    # RUNNING trials whose sweeper died (on this machine) are marked FAIL at the start;
    # trials of live sweepers, or of sweepers on other machines, are left alone.
    fail_running_trials: bool = True
    # After the search: re-train the best `confirm_top` configurations (0: none) on
    # `confirm_seeds` held-out seeds each (abe.sweeps.confirmation).
    confirm_top: int = 3
    confirm_seeds: int = 5
    # true: hydra-optuna-sweeper's own loop, which asks n_jobs trials at a time and waits for
    # the slowest of them before it asks again (kept to measure what abe's slots save).
    wait_for_batch: bool = False
    # Seconds between the heartbeats of this sweeper's RUNNING trials in the study. A trial
    # whose heartbeat is 4 beats old is marked FAIL by the next sweeper that opens the study,
    # on any machine (0: off; then only trials of a dead sweeper on this machine are found).
    heartbeat_s: int = 30
    # An env-step budget: no new trial starts once this sweep's trials would run more env
    # steps than this, all seeds counted (an ended trial counts the steps it ran, up to its
    # last evaluation if pruned or failed; a running one its whole budget); n_trials still
    # caps the count. 0: no budget. Makes sweeps with other n_seeds or pruners comparable.
    max_env_steps: int = 0


ConfigStore.instance().store(group="hydra/sweeper", name="abe_optuna", node=AbeOptunaSweeperConf, provider="abe")


class AbeOptunaSweeper(OptunaSweeper):
    def __init__(
        self,
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
        **kwargs,
    ) -> None:
        check_options(pruner, pruner_warmup, pruner_keep, prune_on, heartbeat_s, max_env_steps, wait_for_batch)
        super().__init__(**kwargs)
        self.sweeper.__class__ = PruningSweeperImpl  # same state, abe's sweep()
        self.sweeper.pruner_spec = f"{pruner}:{pruner_warmup}:{pruner_keep}"
        self.sweeper.fail_running_trials = fail_running_trials
        self.sweeper.prune_on = prune_on
        self.sweeper.confirm_top, self.sweeper.confirm_seeds = confirm_top, confirm_seeds
        self.sweeper.wait_for_batch, self.sweeper.heartbeat_s = wait_for_batch, heartbeat_s
        self.sweeper.max_env_steps = max_env_steps


# Set when a sweep ended without one finished trial: run.py then exits 1.
found_nothing = False

# The sweeper process that asked a trial, as host:pid.
OWNER_ATTR = "abe_sweeper"
FAIL_ATTR = "abe_fail_reason"  # why a trial failed, in one line


def sweeper_is_gone(owner: str | None) -> bool:
    """A RUNNING trial is abandoned when the sweeper that asked it has died: known only
    on its own machine (a trial of a sweeper elsewhere is left alone); a trial from
    before abe recorded owners counts as abandoned."""
    if not owner:
        return True
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def check_options(
    pruner: str,
    pruner_warmup: float,
    pruner_keep: float,
    prune_on: str,
    heartbeat_s: int = 30,
    max_env_steps: int = 0,
    wait_for_batch: bool = False,
) -> None:
    """abe's own sweeper options; run.py checks them before a sweep starts (abe.commands.hydra_edge)."""
    if not _is_count(heartbeat_s):
        raise ConfigError(f"hydra.sweeper.heartbeat_s: got {heartbeat_s!r}; allowed: an integer >= 0 (seconds; 0: off)")
    if not _is_count(max_env_steps):
        raise ConfigError(
            f"hydra.sweeper.max_env_steps: got {max_env_steps!r}; "
            "allowed: an integer >= 0 (env steps of all seeds; 0: no budget)"
        )
    if max_env_steps and wait_for_batch:
        raise ConfigError(
            "hydra.sweeper.max_env_steps: a budget needs abe's slots; allowed with hydra.sweeper.wait_for_batch=false"
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


class PruningSweeperImpl(_impl.OptunaSweeperImpl):
    pruner_spec: str = "median:0"
    fail_running_trials: bool = True
    prune_on: str = "train/episode_return"
    confirm_top: int = 3
    confirm_seeds: int = 5
    wait_for_batch: bool = False
    heartbeat_s: int = 30
    max_env_steps: int = 0
    slots: Slots | None = None

    def sweep(self, arguments: list[str]) -> None:
        if self.storage is None and self.pruner_spec != "none":
            log.warning("hydra.sweeper.storage is not set: trials cannot report to the study, so no pruning")
        self._asked: list[int] = []  # this sweeper's trials (other sweepers may share the study)
        # Optuna beats for trials of Study.optimize only; abe's slots beat for their trials
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        try:
            if self.wait_for_batch:  # the stock loop: batches of n_jobs trials (for comparison)
                with mock.patch.object(_impl.optuna, "create_study", self._create_study):
                    super().sweep(arguments)
            else:
                self._search(arguments)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (run.py turns it into this)
            if self.slots is not None:
                self.slots.stop(self.study)
            self._fail_unfinished("interrupted")
            raise
        except ValueError:  # the stock sweep() ends with study.best_trial, which needs a finished trial
            if getattr(self, "study", None) is None or self._finished():
                raise
        if not self._finished():
            global found_nothing
            found_nothing = True
            counts = ", ".join(f"{n} {state}" for state, n in self._states().items())
            print(
                f"error: no trial of the sweep finished ({counts}); each trial's MLflow run says why", file=sys.stderr
            )
            return
        self._write_results()
        self._after_sweep(self._confirm())

    def _search(self, arguments: list[str]) -> None:
        """The stock sweep's setup, then trials in slots (abe.sweeps.slots)."""
        self._process_searchspace_config()
        space, fixed_params, fixed_overrides = _impl.create_params_from_overrides(
            [*self._parse_sweeper_params_config(), *arguments]
        )
        for name in fixed_params:
            space.pop(name, None)
        if isinstance(self.sampler, functools.partial) and self.sampler.func == optuna.samplers.GridSampler:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in space.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
        study = self._create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.sampler,
            directions=self._get_directions(),
            load_if_exists=True,
        )
        log.info("Study %s in %s; sampler %s", study.study_name, self.storage, type(self.sampler).__name__)
        launch, size = trial_launcher(self.launcher, self.n_jobs)
        self.slots = Slots(launch, size, study._storage, self.heartbeat_s)
        self._run_trials(lambda trial: self._configure_trials([trial], space, fixed_params, fixed_overrides)[0])
        self.job_idx = 1 + max(t.number for t in study.get_trials(deepcopy=False))  # confirmation jobs go after

    def _run_trials(self, configure) -> None:
        """Keep every slot busy until n_trials trials were asked and all have ended."""
        to_ask, ended, failures, last_error = self.n_trials, 0, 0, None
        while to_ask or self.slots.running:
            while to_ask and self.slots.free and self._affordable():
                trial = self.study.ask()
                to_ask -= 1
                self.slots.start(trial, configure(trial))
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

    def _tell(self, ended: Ended) -> Exception | None:
        """Records a trial's end in the study; returns its error when it failed."""
        try:
            if ended.error is not None:
                raise ended.error
            value = float(ended.job.return_value)  # raises what the job raised
        except Exception as ex:
            reason = f"{type(ex).__name__}: {first_line(ex)}"
            with contextlib.suppress(RuntimeError):  # a trial the job already ended keeps its state
                ended.trial.set_user_attr(FAIL_ATTR, reason)
            self.study.tell(ended.trial, state=optuna.trial.TrialState.FAIL)
            log.warning("trial #%d failed: %s", ended.trial.number, reason)
            return ex
        try:
            self.study.tell(ended.trial, values=[value])
        except RuntimeError as ex:  # the grid sampler stops the study when its grid is done
            if "Study.stop" not in str(ex):
                raise
        return None

    def _write_results(self) -> None:
        best = self.study.best_trial
        results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        if self.slots is not None:  # abe's loop: what this sweep's trials ran, all seeds
            results["env_steps"] = self._env_steps()[0]
        path = Path(self.config.hydra.sweep.dir) / "optimization_results.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(results, sort_keys=False))
        log.info("best of the study: trial #%d, %s: %s", best.number, best.params, best.value)

    def _finished(self) -> bool:
        return bool(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))

    def _states(self) -> dict[str, int]:
        states = [t.state.name for t in self.study.get_trials(deepcopy=False)]
        return {state: states.count(state) for state in sorted(set(states))}

    def _fail_unfinished(self, why: str) -> None:
        """An interrupted sweep leaves none of its trials RUNNING: they become FAIL."""
        study = getattr(self, "study", None)
        if study is None:
            return
        running = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
        for number in sorted(running & set(self._asked)):
            study.tell(number, state=optuna.trial.TrialState.FAIL)
        if running & set(self._asked):
            log.warning("%s: marked trial(s) %s FAIL", why, sorted(running & set(self._asked)))

    @staticmethod
    def _fail_abandoned(study: optuna.Study) -> None:
        """RUNNING trials left by a sweeper that died: one that stopped its heartbeat (on any
        machine), or one on this machine whose process is gone."""

        def running() -> list[optuna.trial.FrozenTrial]:
            return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))

        before = len(running())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        abandoned = [t for t in running() if sweeper_is_gone(t.user_attrs.get(OWNER_ATTR))]
        for trial in abandoned:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        if before - len(running()):
            log.warning("marked %d trial(s) of a stopped sweeper FAIL", before - len(running()))

    def _create_study(self, **kwargs) -> optuna.Study:
        if isinstance(kwargs.get("storage"), str):
            kwargs["storage"] = open_storage(kwargs["storage"], self.heartbeat_s or None)
        study = _create_study(pruner=make_pruner(self.pruner_spec), **kwargs)
        if SETTINGS_ATTR not in study.user_attrs:  # what its values mean (checked by run.py: abe.sweeps.study)
            searched = searched_keys(list(self.config.hydra.overrides.task), self.params)
            study.set_user_attr(SETTINGS_ATTR, study_settings(self.config, searched))
        if self.fail_running_trials:
            self._fail_abandoned(study)
        tell = study.tell

        def tell_and_report(*args, **kwargs):
            frozen = tell(*args, skip_if_finished=True, **kwargs)
            log.info(progress_line(study))
            return frozen

        study.tell = tell_and_report
        self.study = study
        return study

    def _configure_trials(self, trials, *args, **kwargs):
        self._asked += [t.number for t in trials]
        for trial in trials:  # whose they are: another sweeper on this study leaves them alone
            trial.set_user_attr(OWNER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        overrides = super()._configure_trials(trials, *args, **kwargs)
        if self.storage is None:
            return overrides
        channel = {
            ENV_STUDY: self.study.study_name,
            ENV_STORAGE: str(self.storage),
            ENV_PRUNER: self.pruner_spec,
            ENV_PRUNE_ON: self.prune_on,
        }
        env = [
            f"+hydra.job.env_set.{k}={QuotedString(text=v, quote=Quote.single).with_quotes()}"
            for k, v in channel.items()
        ]
        return [
            tuple(o) + tuple(env) + (f"+hydra.job.env_set.{ENV_TRIAL}={t._trial_id}",)
            for o, t in zip(overrides, trials, strict=True)
        ]

    def _fixed_overrides(self, params: dict, drop: tuple[str, ...] = ()) -> list[str]:
        """The command line's overrides that the trials did not search over, less `drop`."""
        skip = {*params, *drop}
        return [a for a in self.config.hydra.overrides.task if a.split("=")[0].lstrip("+~") not in skip]

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
                _ = job.return_value  # raises what the job raised
                rows.append(entry(trial, seeds, read_returns(Path(job.hydra_cfg.hydra.runtime.output_dir))))
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
            params, what = confirmation[0]["params"], f"the confirmed best (#{confirmation[0]['trial']}, held-out mean "
            what += f"{confirmation[0]['mean']:.1f})"
        else:
            best = self.study.best_trial
            params, what = best.params, f"the best trial (#{best.number}, {best.value:.1f})"
        fixed = self._fixed_overrides(params, ("hparams_search",))  # a single run
        command = shlex.join(["python", "run.py", *fixed, *(f"{k}={v}" for k, v in params.items())])
        (sweep_dir / "best_command.txt").write_text(command + "\n")
        log.info("re-train %s:\n  %s", what, command)


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


def write_study_plots(study: optuna.Study, sweep_dir: Path) -> list[Path]:
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
    written = []
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
        written.append(sweep_dir / name)
    return written
