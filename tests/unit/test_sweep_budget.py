"""hydra.sweeper.max_env_steps: a sweep stops asking for trials once the next one could
overrun its env-step budget, and a pruned trial pays only for the steps it ran."""

from types import SimpleNamespace

import optuna
from omegaconf import OmegaConf

from abe.sweeps.optuna_sweeper import AbeOptunaSweeperConf
from abe.sweeps.search import OptunaSearch
from abe.sweeps.search_space import SearchSpace
from abe.sweeps.slots import Slots

States = optuna.trial.TrialState
TOTAL_STEPS, SEEDS = 1000, 2  # a trial may run 2,000 env steps, all seeds


def budget_sweep(budget: int, pruned_at: dict[int, int]) -> tuple[OptunaSearch, optuna.Study]:
    """A sweeper of 10 trials whose jobs end at once: trial n is pruned after
    `pruned_at[n]` env steps per seed, the others complete."""
    defaults = {k: v for k, v in vars(AbeOptunaSweeperConf()).items() if k not in ("_target_", "defaults")}
    options = {**defaults, "sampler": {"_target_": "optuna.samplers.RandomSampler", "seed": 0}, "max_env_steps": budget}
    sweeper = OptunaSearch(**{**options, "n_trials": 10, "params": None})
    sweeper.config = OmegaConf.create({"trainer": {"total_steps": TOTAL_STEPS}, "n_seeds": SEEDS})
    sweeper.storage = optuna.storages.InMemoryStorage()
    sweeper.study = study = optuna.create_study(storage=sweeper.storage, direction="maximize")
    sweeper.study_id = sweeper.storage.get_study_id_from_name(study.study_name)

    def launch(overrides, number: int):
        if number in pruned_at:  # the job's side: report, then mark the trial pruned
            optuna.trial.Trial(study, sweeper._id_in_storage(number)).report(0.0, pruned_at[number])
            study.tell(number, state=States.PRUNED)
        return SimpleNamespace(return_value=float(number))

    sweeper.slots = Slots(launch, 1)
    sweeper._run_trials(SearchSpace())
    return sweeper, study


def test_the_budget_stops_the_sweep_before_a_trial_could_overrun_it(caplog):
    caplog.set_level("INFO")
    sweeper, study = budget_sweep(5000, {})  # room for 2.5 trials
    assert [t.state for t in study.trials] == [States.COMPLETE] * 2
    assert sweeper._env_steps() == (4000, 0)
    assert "env-step budget: 4,000 of hydra.sweeper.max_env_steps=5,000 spent; a trial needs 2,000" in caplog.text


def test_a_pruned_trial_pays_for_the_steps_it_ran_and_leaves_the_rest_to_other_trials():
    sweeper, study = budget_sweep(5000, {0: 250})  # trial 0 stops after 250 of its 1000 steps per seed
    assert [t.state for t in study.trials] == [States.PRUNED, States.COMPLETE, States.COMPLETE]
    assert sweeper._env_steps() == (250 * SEEDS + 2 * 2000, 0)


def test_without_a_budget_n_trials_alone_ends_the_sweep():
    _, study = budget_sweep(0, {3: 500})
    assert len(study.trials) == 10 and study.trials[3].state == States.PRUNED
