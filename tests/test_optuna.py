"""`-m hparams_search=lr_gamma`: Optuna sweeps that prune, fail gracefully, resume and
run in parallel, with every trial in the study and in MLflow."""

import warnings

import mlflow
import optuna
import pytest

from abe.optuna_sweeper import (ENV_PRUNE_ON, ENV_PRUNER, ENV_STORAGE, ENV_STUDY, ENV_TRIAL, Pruned, TrialReporter,
                                make_pruner)
from tests.conftest import run_cli

States = optuna.trial.TrialState
SMALL = ["hparams_search=lr_gamma", "env=pendulum", "trainer.total_steps=4096", "trainer.eval_every=512",
         "trainer.num_envs=2", "trainer.eval_episodes=2", "trainer.progress_bar=false"]


def sweep(tmp_path, *extra, name="sweep"):
    proc = run_cli("-m", *SMALL, f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}",
                   f"logger.store_dir={tmp_path / 'store'}", f"hydra.sweep.dir={tmp_path / name}", *extra,
                   env={"MLFLOW_TRACKING_URI": ""}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="lr_gamma-Pendulum-v1", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    return proc, study


def mlflow_children(tmp_path):
    warnings.filterwarnings("ignore", message=".*noload.*")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("Pendulum-v1")
    runs = client.search_runs([experiment.experiment_id])
    return client, [r for r in runs if "mlflow.parentRunId" in r.data.tags], [
        r for r in runs if r.data.tags.get("abe.sweep") == "parent"]


def test_median_pruning_stops_bad_trials_and_shows_them_everywhere(tmp_path):
    proc, study = sweep(tmp_path, "hydra.sweeper.n_trials=10", "hydra.sweeper.pruner=median")
    states = [t.state for t in study.trials]
    assert len(states) == 10 and States.PRUNED in states and States.COMPLETE in states
    pruned = [t for t in study.trials if t.state == States.PRUNED]
    assert all(max(t.intermediate_values) < 4096 for t in pruned)  # stopped before the end
    assert "pruned by Optuna at" in proc.stdout + proc.stderr
    client, children, [parent] = mlflow_children(tmp_path)
    assert len(children) == 10
    killed = [c for c in children if c.info.status == "KILLED"]
    assert len(killed) == len(pruned) and all(c.data.tags["optuna_state"] == "PRUNED" for c in killed)
    assert parent.data.tags["sweep_pruned"] == str(len(pruned))
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"optuna_history.png", "optuna_contour_lr_gamma.png", "best_command.txt", "optimization_results.yaml"} <= artifacts
    best_command = (tmp_path / "sweep" / "best_command.txt").read_text()
    assert f"lr={study.best_params['lr']}" in best_command and "hparams_search" not in best_command
    assert "re-train the best trial" in proc.stdout + proc.stderr

    # The same command again resumes the study; a trial an interrupted sweep left
    # RUNNING is marked FAIL instead of staying RUNNING forever.
    abandoned = study.ask()
    _, resumed = sweep(tmp_path, "hydra.sweeper.n_trials=2", name="again")
    assert len(resumed.trials) == 13
    assert resumed.trials[abandoned.number].state == States.FAIL
    assert all(t.state != States.RUNNING for t in resumed.trials)


def test_a_diverging_trial_fails_and_the_sweep_goes_on(tmp_path):
    _, study = sweep(tmp_path, "optimizer=sgd", "hydra.sweeper.n_trials=4", "hydra.sweeper.pruner=none",
                     "lr=choice(1e-3,1e6)")
    by_lr = {t.params["lr"]: t.state for t in study.trials}
    assert by_lr == {1e-3: States.COMPLETE, 1e6: States.FAIL}
    _, children, _ = mlflow_children(tmp_path)
    failed = [c for c in children if c.info.status == "FAILED"]
    assert failed and all(c.data.tags["error"].startswith("training diverged at") for c in failed)


def test_two_parallel_workers_record_every_trial_once(tmp_path):
    # The search space grows from the command line in the spelling too.
    _, study = sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
                     "hydra.sweeper.n_trials=4", "hydra.sweeper.pruner=none", "hydra.sweeper.params.network.width=choice(32,48)")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state == States.COMPLETE for t in study.trials)
    assert {t.params["network.width"] for t in study.trials} <= {32, 48}
    _, children, _ = mlflow_children(tmp_path)
    assert sorted(float(c.data.params["lr"]) for c in children) == sorted(t.params["lr"] for t in study.trials)
    by_trial = {(float(c.data.params["lr"]), int(c.data.params["network.width"])) for c in children}
    assert by_trial == {(t.params["lr"], t.params["network.width"]) for t in study.trials}  # each job trained what its trial asked


def test_postgresql_study_with_two_parallel_workers(tmp_path, postgres):
    proc = run_cli("-m", *SMALL, f"hydra.sweeper.storage={postgres}", "hydra/launcher=joblib",
                   "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=4",
                   "hydra.sweeper.pruner=median", f"logger.store_dir={tmp_path / 'store'}",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", env={"MLFLOW_TRACKING_URI": ""}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="lr_gamma-Pendulum-v1", storage=postgres)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]  # every trial once
    assert all(t.state in (States.COMPLETE, States.PRUNED) for t in study.trials)
    assert all(t.intermediate_values for t in study.trials)  # reports crossed the job boundary
    _, children, _ = mlflow_children(tmp_path)
    assert len(children) == 4


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

    assert should_prune(30.0, 500)           # 3rd of 5: outside the top quarter (above 32.5)
    assert not should_prune(35.0, 500)       # inside it
    assert not should_prune(0.0, 200)        # still in the warm-up: never pruned
    median = optuna.create_study(direction="maximize", pruner=make_pruner("median:0.25", 1000))
    for final in (10.0, 20.0, 30.0, 40.0):
        trial = median.ask()
        trial.report(final, 500)
        median.tell(trial, final)
    trial = median.ask()
    trial.report(30.0, 500)
    assert not trial.should_prune()           # the median pruner keeps what percentile(0.25) stops


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
        env = {ENV_STUDY: "s", ENV_STORAGE: storage, ENV_PRUNER: "median:0", ENV_PRUNE_ON: "eval/return_mean",
               ENV_TRIAL: str(study.ask()._trial_id)}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return TrialReporter(total_steps=1000)

    with pytest.raises(Pruned, match="pruned by Optuna at 500 env steps"):
        reporter().report({"env_steps": 500, "eval/return_mean": 0.0})
    last = reporter()
    last.report({"env_steps": 1024, "eval/return_mean": 0.0})
    assert last.last_value == 0.0 and not last.pruned
