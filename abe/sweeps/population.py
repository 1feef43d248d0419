"""A population-based training sweep (abe.sweeps.pbt_sweeper.AbePbtSweeper runs it).

One job trains the whole population in one process: its `population` seeds are the
members, and its `pbt` section says how they exploit and explore (abe.training.pbt).
Then the best member's schedule (its lr and gamma over env steps, inherited through
the copies behind its weights) is re-trained from scratch on held-out seeds, the way
an Optuna sweep confirms its picks, and `best_command.txt` re-trains it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig
from optuna.distributions import CategoricalDistribution, FloatDistribution

from abe.core.errors import ConfigError, SweepEnded, TrainingDiverged, first_line
from abe.core.files import WriteFailed
from abe.core.result import CONFIRMATION_TAG, OBJECTIVE
from abe.core.schema import PBT_KEYS, PbtConfig
from abe.sweeps.confirmation import (
    check_confirmation,
    entry,
    held_out_seeds,
    job_value,
    read_returns,
    write_best_command,
    write_confirmation,
    write_results,
)
from abe.sweeps.search_space import SearchSpace, without_keys

log = logging.getLogger(__name__)


def pbt_space(space: SearchSpace) -> dict:
    """The job's `pbt.space` from the sweep's search space (lr and gamma only)."""
    other = [key for key in space.distributions if key not in PBT_KEYS]
    if other:
        raise ConfigError(
            f"hydra.sweeper.params: PBT changes lr and gamma during training, not {other[0]}; allowed: lr, gamma "
            f"(give {other[0]} one value)"
        )
    if not space.distributions:
        raise ConfigError(
            "hydra.sweeper.params: nothing to search; allowed: lr and/or gamma, e.g. gamma='choice(0.99,0.995)'"
        )
    entries = {}
    for key, d in space.distributions.items():
        if isinstance(d, FloatDistribution) and d.step is None:
            entries[key] = {"low": d.low, "high": d.high, "log": d.log}
        elif isinstance(d, CategoricalDistribution) and all(isinstance(c, int | float) for c in d.choices):
            entries[key] = {"choices": [float(c) for c in d.choices]}
        else:
            raise ConfigError(
                f"hydra.sweeper.params.{key}: PBT draws from interval(low, high) (tag(log, ...) for a log scale) "
                "or choice(...) of numbers"
            )
    return entries


def pbt_section(interval, quantile, resample, perturb, space: SearchSpace) -> dict:
    """The job's `pbt` section, checked as the job will check it (names: hydra.sweeper.*)."""
    section = {"interval": interval, "quantile": quantile, "resample": resample, "perturb": list(perturb)}
    PbtConfig.from_dict({**section, "space": {"lr": {"choices": [1.0]}}}, "hydra.sweeper.")
    return {**section, "space": pbt_space(space)}


def check_population(population, confirm_seeds, interval, total_steps: int, num_envs: int, n_seeds: int) -> None:
    if not (isinstance(population, int) and not isinstance(population, bool) and population >= 2):
        raise ConfigError(f"hydra.sweeper.population: got {population!r}; allowed: an integer >= 2")
    if n_seeds != 1:
        raise ConfigError(
            f"n_seeds: got {n_seeds} with hparams_search=pbt, whose members are the seeds: set "
            f"hydra.sweeper.population={n_seeds} instead"
        )
    if isinstance(interval, int) and interval >= total_steps:
        raise ConfigError(
            f"hydra.sweeper.interval: got {interval:,}; allowed: fewer env steps than trainer.total_steps "
            f"({total_steps:,}), or no member would ever be copied"
        )
    if not (isinstance(confirm_seeds, int) and confirm_seeds >= 0):
        raise ConfigError(
            f"hydra.sweeper.confirm_seeds: got {confirm_seeds!r}; allowed: an integer >= 0 (0: no replay)"
        )
    check_confirmation(1, max(confirm_seeds, 1), population, num_envs)


def hydra_value(value) -> str:
    """A plain value in Hydra's override grammar."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def read_members(job_dir: Path) -> list[dict]:
    """Each member's result.json, in seed order."""
    paths = sorted(job_dir.glob("seed_*/result.json"), key=lambda p: int(p.parent.name[5:]))
    return [json.loads(path.read_text()) for path in paths]


class PopulationSweep:
    def __init__(self, population, interval, quantile, resample, perturb, confirm_seeds, params) -> None:
        self.population, self.confirm_seeds, self.params = population, confirm_seeds, params
        self.options = (interval, quantile, resample, perturb)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        space = SearchSpace.parse([*(f"{k}={v}" for k, v in (self.params or {}).items()), *arguments])
        trainer = self.config.trainer
        check_population(
            self.population,
            self.confirm_seeds,
            self.options[0],
            trainer.total_steps,
            trainer.num_envs,
            self.config.n_seeds,
        )
        section = pbt_section(*self.options, space)
        fixed = [*(f"{k}={v}" for k, v in space.fixed.items()), *space.deletions]
        log.info(
            "PBT: %d members of %s, searching %s; a round every %s env steps",
            self.population, self.config.env.id, " and ".join(section["space"]), f"{section['interval']:,}",
        )  # fmt: skip
        overrides = [*fixed, f"n_seeds={self.population}", f"pbt={hydra_value(section)}"]
        (job,) = self.launcher.launch([overrides], initial_job_idx=0)
        try:
            job_value(job)
        except (TrainingDiverged, WriteFailed) as ex:  # the job said it in one line
            raise SweepEnded(f"the population failed: {ex}", said=True) from None
        except Exception as ex:
            raise SweepEnded(f"the population failed: {type(ex).__name__}: {first_line(ex)}") from None
        members = read_members(Path(job.hydra_cfg.hydra.runtime.output_dir))
        best = max(members, key=lambda m: m[OBJECTIVE])
        sweep_dir = Path(self.config.hydra.sweep.dir)
        results = {
            "name": "pbt",
            "population": self.population,
            "best_member": describe(best, full=True),
            "members": [describe(m) for m in members],
            "env_steps": sum(m["env_steps"] for m in members),
        }
        write_results(sweep_dir, results)
        from abe.core.plots import population_plot

        population_plot(members, best["seed"], self.config.env.id, sweep_dir / "pbt_population.png")
        log.info("best member: seed %d, final eval return %.1f", best["seed"], best[OBJECTIVE])
        replay = self._replay(best, fixed) if self.confirm_seeds else None
        if replay is not None:
            write_confirmation([replay], sweep_dir)
        single_run = without_keys(fixed, ("hparams_search", "n_seeds", *PBT_KEYS))
        write_best_command(
            sweep_dir, [*single_run, *replay_overrides(best)], "the best member's schedule, replayed from scratch"
        )

    def _replay(self, best: dict, fixed: list[str]) -> dict | None:
        """The best member's schedule trained from scratch on held-out seeds: one K-seed job."""
        seeds = held_out_seeds(int(self.config.seed), self.confirm_seeds)
        log.info("replaying the best member's schedule on held-out seeds %d-%d", seeds[0], seeds[-1])
        overrides = [
            *without_keys(fixed, ("n_seeds", "seed", *PBT_KEYS)),  # the sweeper's options apply: hparams_search stays
            *replay_overrides(best),
            f"seed={seeds[0]}",
            f"n_seeds={len(seeds)}",
            f"++logger.tags.{CONFIRMATION_TAG}=1",
        ]
        (job,) = self.launcher.launch([overrides], initial_job_idx=1)
        try:
            job_value(job)
        except Exception as ex:
            log.warning("the replay on held-out seeds failed: %s", ex)
            return None
        returns = read_returns(Path(job.hydra_cfg.hydra.runtime.output_dir))
        _, lr, gamma = best["schedule"][0]
        params = {"lr": lr, "gamma": gamma, "changes": len(best["schedule"]) - 1}
        row = entry(best["seed"], params, best[OBJECTIVE], seeds, returns, label=f"member seed {best['seed']}")
        log.info(
            "held-out: the best member's schedule: mean %.1f, IQM %.1f, 95%% interval [%.1f, %.1f] (its own %.1f)",
            row["mean"], row["iqm"], *row["ci95"], row["tuning_value"],
        )  # fmt: skip
        return row


def replay_overrides(member: dict) -> list[str]:
    """The overrides that train a member's schedule from scratch: its starting lr and gamma,
    then each change at its env step."""
    (_, lr, gamma), *changes = member["schedule"]
    return [f"lr={lr!r}", f"gamma={gamma!r}", f"schedule={hydra_value(changes)}"]


def describe(member: dict, full: bool = False) -> dict:
    """A member in optimization_results.yaml; `start` is where its weights' schedule began
    (another member's, once it copied)."""
    _, lr, gamma = member["schedule"][0]
    entry = {
        "seed": member["seed"],
        "final_eval_return": member[OBJECTIVE],
        "start": {"lr": lr, "gamma": gamma},
        "copies": len(member["lineage"]),
    }
    if full:
        entry["schedule"], entry["lineage"] = member["schedule"], member["lineage"]
    return entry
