"""The pruners abe builds, and the job's side of pruning (a callback that says stop)."""

import optuna
import pytest

from abe.sweeps.pruning import ENV_PRUNE_ON, ENV_PRUNER, ENV_STORAGE, ENV_STUDY, ENV_TRIAL, make_pruner
from abe.sweeps.reporter import TrialReporter


def test_percentile_pruner_keeps_the_top_share_after_the_warm_up():
    """pruner=percentile with pruner_keep=0.25: after 3 finished trials and the warm-up
    (a quarter of 1000 steps), a trial outside the top quarter of the finished trials
    at that step stops; one inside it goes on."""
    study = optuna.create_study(direction="maximize", pruner=make_pruner("percentile:0.25:0.25", 1000))
    for final in (10.0, 20.0, 30.0, 40.0):  # finished trials, reported at step 500
        trial = study.ask()
        trial.report(final, 500)
        study.tell(trial, final)

    def should_prune(value: float, step: int) -> bool:
        trial = study.ask()
        trial.report(value, step)
        return trial.should_prune()

    assert should_prune(30.0, 500)  # 3rd of 5: outside the top quarter (above 32.5)
    assert not should_prune(35.0, 500)  # inside it
    assert not should_prune(0.0, 200)  # still in the warm-up: never pruned
    median = optuna.create_study(direction="maximize", pruner=make_pruner("median:0.25", 1000))
    for final in (10.0, 20.0, 30.0, 40.0):
        trial = median.ask()
        trial.report(final, 500)
        median.tell(trial, final)
    trial = median.ask()
    trial.report(30.0, 500)
    assert not trial.should_prune()  # the median pruner keeps what percentile(0.25) stops


def test_a_trial_is_pruned_before_its_last_evaluation_never_at_it(tmp_path, monkeypatch):
    """Below the median half-way: stopped. Below it at the last evaluation: kept, since
    its training is done and pruning it would only throw its result away."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for final in (10.0, 20.0, 30.0):  # finished trials, reported half-way and at the end
        trial = study.ask()
        trial.report(final, 500)
        trial.report(final, 1024)  # the last evaluation comes at the first rollout past total_steps
        study.tell(trial, final)

    def reporter() -> TrialReporter:
        env = {
            ENV_STUDY: "s",
            ENV_STORAGE: storage,
            ENV_PRUNER: "median:0",
            ENV_PRUNE_ON: "eval/return_mean",
            ENV_TRIAL: str(study.ask()._trial_id),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return TrialReporter(total_steps=1000)

    halfway = reporter()
    assert halfway.on_evaluation(None, [{"env_steps": 500, "eval/return_mean": 0.0}]) is False
    assert halfway.stop_reason == "pruned by Optuna at 500 env steps (eval/return_mean 0.0)"
    last = reporter()
    assert last.on_evaluation(None, [{"env_steps": 1024, "eval/return_mean": 0.0}]) is True
    assert last.last_value == 0.0 and last.stop_reason is None


def test_the_pruner_sees_the_statistic_over_all_seeds(tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for key, value in {
        ENV_STUDY: "s",
        ENV_STORAGE: storage,
        ENV_PRUNER: "none",
        ENV_PRUNE_ON: "eval/return_mean",
    }.items():
        monkeypatch.setenv(key, value)
    records = [{"env_steps": 500, "eval/return_mean": v} for v in (100.0, 400.0, 700.0, 1000.0)]

    def reported(statistic: str) -> tuple[float, float]:
        monkeypatch.setenv(ENV_TRIAL, str(study.ask()._trial_id))
        reporter = TrialReporter(total_steps=1000, statistic=statistic)
        assert reporter.on_evaluation(None, records) is True
        return study.trials[-1].intermediate_values[500], reporter.last_value

    assert reported("mean") == (550.0, 550.0)  # all four seeds, not the first
    assert reported("iqm") == (550.0, 550.0)  # the middle two
    value, last = reported("lcb")
    assert value == last < 550.0


def test_held_out_seeds_are_disjoint_from_the_tuning_seeds_and_their_envs():
    from abe.core.errors import ConfigError
    from abe.sweeps.confirmation import HELD_OUT_OFFSET, check_confirmation, held_out_seeds

    tuning_seed, n_seeds, num_envs = 7, 4, 32
    held_out = held_out_seeds(tuning_seed, 5)
    assert held_out == list(range(1007, 1012))
    tuning_env_seeds = {s + i for s in range(tuning_seed, tuning_seed + n_seeds) for i in range(num_envs)}
    held_out_env_seeds = {s + i for s in held_out for i in range(num_envs)}
    assert not tuning_env_seeds & held_out_env_seeds
    check_confirmation(3, 5, n_seeds, num_envs)
    with pytest.raises(ConfigError, match=r"n_seeds: 990 seeds of 32 envs would reach the held-out seeds \(tuning"):
        check_confirmation(3, 5, 990, 32)
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.confirm_seeds: got 0; allowed: an integer >= 1"):
        check_confirmation(3, 0, 4, 32)
    assert HELD_OUT_OFFSET == 1000


def test_a_trials_progress_line_shows_the_users_overrides_not_the_plumbing():
    from abe.sweeps.slots import shown

    overrides = ["lr=0.001", "gamma=0.9", "+hydra.job.env_set.ABE_OPTUNA_TRIAL_ID=3", "hydra.run.dir=x"]
    assert shown(overrides) == "lr=0.001 gamma=0.9"


def test_a_job_whose_trial_another_sweeper_failed_stops_with_the_reason(tmp_path, monkeypatch):
    """Its sweeper was stopped (SIGSTOP) past the heartbeat, so the next sweeper of the study
    failed the trial as abandoned; when the job goes on, its next report says so and stops it
    (before: Optuna's 'Trial#0 has already finished and can not be updated')."""
    from abe.core.errors import TrialEndedElsewhere

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = study.ask()
    env = {ENV_STUDY: "s", ENV_STORAGE: storage, ENV_PRUNER: "none", ENV_TRIAL: str(trial._trial_id)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reporter = TrialReporter(total_steps=1000)
    study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # what fail_stale_trials does
    with pytest.raises(
        TrialEndedElsewhere, match="trial #0 was already ended in the study: its sweeper died, or another sweeper"
    ):
        reporter.on_evaluation(None, [{"env_steps": 500, "eval/return_mean": 0.0}])
