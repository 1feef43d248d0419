"""The Hydra plugin `hydra/sweeper=abe_optuna` (what `hparams_search=lr_gamma` selects):
its options with their defaults, and the Sweeper Hydra instantiates.

Hydra imports this module at every start to find its plugins, so it imports nothing
heavy: the search (Optuna, the slots, confirmation) loads from abe.sweeps.search when
a sweep runs. The schema extends hydra-optuna-sweeper's (sampler, direction, storage,
study_name, n_trials, n_jobs, max_failure_rate, params); each option's default lives
here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper.config import Direction, OptunaSweeperConf
from omegaconf import DictConfig


def option(default: Any, doc: str) -> Any:
    """An option with its default and its one-line description (docs/sweeps.md's table)."""
    return field(default=default, metadata={"doc": doc})


@dataclass
class AbeOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "abe.sweeps.optuna_sweeper.AbeOptunaSweeper"
    direction: Any = option(  # noqa: RUF009 (option() returns a dataclass field, not a shared default)
        Direction.maximize, "the objective: seed_statistic over a trial's final eval returns"
    )
    n_trials: int = option(20, "trials this sweep adds to the study")
    n_jobs: int = option(
        1,
        "trials running at once; the next starts when one ends (more than 1 needs a launcher that runs "
        "jobs side by side: hydra/launcher=joblib with hydra.launcher.n_jobs, ray, slurm)",
    )
    max_failure_rate: float = option(1.0, "stop asking for trials once more than this share failed (1.0: never)")
    pruner: str = option("median", "median, percentile, hyperband or none")
    pruner_warmup: float = option(0.25, "share of trainer.total_steps before median/percentile may stop a trial")
    pruner_keep: float = option(0.25, "percentile: the share of trials that goes on at each evaluation")
    # The final objective stays the eval return; the stochastic training return tracks
    # learning more steadily (docs/lab-notes.md).
    prune_on: str = option("train/episode_return", "the metric running trials are compared on")
    fail_running_trials: bool = option(
        True,
        "at the start, mark FAIL the RUNNING trials whose sweeper died (this machine: its process is gone; "
        "any machine: its heartbeat stopped)",
    )
    confirm_top: int = option(3, "after the search, re-train this many best configurations on held-out seeds (0: none)")
    confirm_seeds: int = option(5, "held-out seeds per confirmed configuration, from seed + 1000")
    # Kept to measure what the slots save (bench/barrier.py).
    wait_for_batch: bool = option(
        False, "ask n_jobs trials at a time and wait for a batch's slowest (hydra-optuna-sweeper's way)"
    )
    heartbeat_s: int = option(
        30, "seconds between heartbeats of RUNNING trials; a trial 4 beats old is FAIL for the next sweeper (0: off)"
    )
    max_env_steps: int = option(
        0,
        "an env-step budget, all seeds counted: no trial starts that could overrun it; a pruned or failed trial "
        "pays for the steps it ran, a running one its whole budget (0: none)",
    )


def options_table(conf: type) -> str:
    """A Markdown table of a sweeper's documented options with their defaults."""
    rows = ["| option | default | what it sets |", "| --- | --- | --- |"]
    for spec in fields(conf):
        if "doc" in spec.metadata:
            default = spec.default_factory() if callable(spec.default_factory) else spec.default
            default = default.name if isinstance(default, Direction) else default
            shown = str(default).lower() if isinstance(default, bool) else default
            rows.append(f"| `hydra.sweeper.{spec.name}` | `{shown}` | {spec.metadata['doc']} |")
    return "\n".join(rows) + "\n"


ConfigStore.instance().store(group="hydra/sweeper", name="abe_optuna", node=AbeOptunaSweeperConf, provider="abe")


class AbeOptunaSweeper(Sweeper):
    def __init__(self, **options: Any) -> None:
        from abe.sweeps.search import OptunaSearch

        self.search = OptunaSearch(**options)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        self.search.sweep(arguments)
