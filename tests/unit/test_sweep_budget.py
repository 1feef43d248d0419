"""hydra.sweeper.max_env_steps: a sweep stops asking for trials once the next one could
overrun its env-step budget, and a pruned trial pays only for the steps it ran."""

import functools
from types import SimpleNamespace

import optuna
from omegaconf import OmegaConf

from abe.sweeps.optuna_sweeper import PruningSweeperImpl
from abe.sweeps.slots import Slots

States = optuna.trial.TrialState
TOTAL_STEPS, SEEDS = 1000, 2  # a trial may run 2,000 env steps, all seeds


def budget_sweep(budget: int, pruned_at: dict[int, int]) -> tuple[PruningSweeperImpl, optuna.Study]:
    """A sweeper of 10 trials whose jobs end at once: trial n is pruned after
    `pruned_at[n]` env steps per seed, the others complete."""
    study = optuna.create_study(direction="maximize")
    study.tell = functools.partial(study.tell, skip_if_finished=True)  # as the sweeper's study does

    def launch(overrides, number: int):
        if number in pruned_at:  # the job's side: report, then mark the trial pruned
            study._storage.set_trial_intermediate_value(study.trials[number]._trial_id, pruned_at[number], 0.0)
            study.tell(number, state=States.PRUNED)
        return SimpleNamespace(return_value=float(number))

    sweeper = object.__new__(PruningSweeperImpl)
    sweeper.config = OmegaConf.create({"trainer": {"total_steps": TOTAL_STEPS}, "n_seeds": SEEDS})
    sweeper.study, sweeper._asked, sweeper.slots = study, [], Slots(launch, 1)
    sweeper.n_trials, sweeper.max_failure_rate, sweeper.max_env_steps = 10, 1.0, budget
    sweeper._run_trials(lambda trial: sweeper._asked.append(trial.number) or [])
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
