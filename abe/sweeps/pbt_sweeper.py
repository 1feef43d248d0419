"""The Hydra plugin `hydra/sweeper=abe_pbt` (what `hparams_search=pbt` selects): its
options with their defaults, and the Sweeper Hydra instantiates.

Like abe.sweeps.optuna_sweeper, this module imports nothing heavy (Hydra imports it at
every start); the population and its replay run from abe.sweeps.population.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from abe.sweeps.optuna_sweeper import option


@dataclass
class AbePbtSweeperConf:
    _target_: str = "abe.sweeps.pbt_sweeper.AbePbtSweeper"
    population: int = option(8, "members trained together in one process (the job's n_seeds: seed, seed+1, ...)")
    interval: int = option(50_000, "env steps per member between exploit-and-explore rounds")
    quantile: float = option(0.25, "each round, this bottom share of members copies one of the same top share")
    resample: float = option(0.25, "chance that an explored value is drawn afresh from the space, not perturbed")
    perturb: list = field(
        default_factory=lambda: [0.8, 1.25],
        metadata={"doc": "the factors a copied value is multiplied by (gamma: 1 - gamma), one drawn per value"},
    )
    confirm_seeds: int = option(
        5, "held-out seeds (from seed + 1000) on which the best member's schedule is re-trained from scratch (0: none)"
    )
    params: dict[str, str] | None = None  # the space of the starting values and fresh draws: lr and/or gamma


ConfigStore.instance().store(group="hydra/sweeper", name="abe_pbt", node=AbePbtSweeperConf, provider="abe")


class AbePbtSweeper(Sweeper):
    def __init__(self, **options: Any) -> None:
        from abe.sweeps.population import PopulationSweep

        self.sweep_ = PopulationSweep(**options)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweep_.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        self.sweep_.sweep(arguments)
