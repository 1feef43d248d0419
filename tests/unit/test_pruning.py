"""The pruners abe builds, and the job's side of pruning (a callback that says stop)."""

import optuna

from abe.sweeps.pruning import ENV_PRUNE_ON, ENV_PRUNER, ENV_STORAGE, ENV_STUDY, ENV_TRIAL, TrialReporter, make_pruner


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
    assert halfway.on_evaluation(None, {"env_steps": 500, "eval/return_mean": 0.0}) is False
    assert halfway.stop_reason == "pruned by Optuna at 500 env steps (eval/return_mean 0.0)"
    last = reporter()
    assert last.on_evaluation(None, {"env_steps": 1024, "eval/return_mean": 0.0}) is True
    assert last.last_value == 0.0 and last.stop_reason is None
