"""The Hydra plugin `hydra/sweeper=abe_optuna` (what `hparams_search=lr_gamma` selects):
its options with their defaults, and the Sweeper Hydra instantiates.

Hydra imports this module at every start to find its plugins, so it imports nothing
heavy: the search (Optuna, the slots, confirmation) loads from abe.sweeps.search when
a sweep runs. The schema extends hydra-optuna-sweeper's (sampler, direction, storage,
study_name, n_trials, n_jobs, max_failure_rate, params); each option's default lives
here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper.config import Direction, OptunaSweeperConf
from omegaconf import DictConfig


@dataclass
class AbeOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "abe.sweeps.optuna_sweeper.AbeOptunaSweeper"
    direction: Any = Direction.maximize  # the objective: seed_statistic over the trial's final eval returns
    n_trials: int = 20
    # Trials running at once; the next starts when one ends. More than 1 needs a launcher
    # that runs jobs beside each other (hydra/launcher=joblib with hydra.launcher.n_jobs).
    n_jobs: int = 1
    max_failure_rate: float = 1.0  # failed trials are recorded as FAIL and the sweep goes on
    pruner: str = "median"  # median | percentile | hyperband | none
    pruner_warmup: float = 0.25  # share of trainer.total_steps before median/percentile may stop a trial
    pruner_keep: float = 0.25  # percentile: the share of trials that goes on at each evaluation
    # What running trials are compared on. The final objective stays the eval return; the
    # stochastic training return tracks learning more steadily (docs/lab-notes.md).
    prune_on: str = "train/episode_return"
    # At the start, RUNNING trials whose sweeper died are marked FAIL (on this machine: its
    # process is gone; on any machine: its heartbeat stopped).
    fail_running_trials: bool = True
    # After the search: re-train the best `confirm_top` configurations (0: none) on
    # `confirm_seeds` held-out seeds each, from seed + 1000 (abe.sweeps.confirmation).
    confirm_top: int = 3
    confirm_seeds: int = 5
    # true: ask n_jobs trials at a time and wait for the slowest of a batch before asking
    # again (hydra-optuna-sweeper's way; kept to measure what the slots save: bench/barrier.py).
    wait_for_batch: bool = False
    # Seconds between heartbeats of this sweeper's RUNNING trials in the study. A trial
    # whose heartbeat is 4 beats old is marked FAIL by the next sweeper that opens the
    # study, on any machine (0: off).
    heartbeat_s: int = 30
    # An env-step budget, all seeds counted: no trial starts that could overrun it (an
    # ended trial counts the steps it ran, up to its last evaluation if pruned or failed;
    # a running one its whole budget); n_trials still caps the count. 0: no budget.
    max_env_steps: int = 0


ConfigStore.instance().store(group="hydra/sweeper", name="abe_optuna", node=AbeOptunaSweeperConf, provider="abe")


class AbeOptunaSweeper(Sweeper):
    def __init__(self, **options: Any) -> None:
        from abe.sweeps.search import OptunaSearch

        self.search = OptunaSearch(**options)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        self.search.sweep(arguments)
