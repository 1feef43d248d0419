"""`-m hparams_search=lr_gamma`: Optuna sweeps that prune, fail gracefully, resume and
run in parallel, with every trial in the study and in MLflow."""

import warnings

import mlflow
import optuna
import pytest
import yaml

from tests.conftest import run_cli

States = optuna.trial.TrialState
SMALL = [
    "hparams_search=lr_gamma",
    "env=pendulum",
    "trainer.total_steps=4096",
    "trainer.eval_every=512",
    "trainer.num_envs=2",
    "trainer.eval_episodes=2",
    "trainer.progress_bar=false",
    "hydra.sweeper.confirm_top=0",  # test_confirmation_... confirms
    # The root config's A2C rather than env=pendulum's own settings, which learn alike in
    # 4096 steps whatever lr and gamma the sweep tries, so the median pruner stops none
    "network.sde=false",
    "network.ortho_init=true",
    "algo.n_steps=8",
    "algo.gae_lambda=0.95",
    "algo.vf_coef=0.5",
    "algo.lr_decay=false",
]


def sweep(tmp_path, *extra, name="sweep"):
    proc = run_cli(
        "-m",
        *SMALL,
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}",
        f"logger.store_dir={tmp_path / 'store'}",
        f"hydra.sweep.dir={tmp_path / name}",
        *extra,
        env={"MLFLOW_TRACKING_URI": ""},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # run.py names abe's callback in Hydra's execution whitelist and registers its
    # ConfigStore nodes once per process: neither warns, in this process or a worker
    assert "execution_whitelist" not in proc.stderr and "already registered" not in proc.stderr, proc.stderr[-3000:]
    study = optuna.load_study(study_name="lr_gamma-Pendulum-v1", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    return proc, study


def mlflow_children(tmp_path):
    warnings.filterwarnings("ignore", message=".*noload.*")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("Pendulum-v1")
    runs = client.search_runs([experiment.experiment_id])
    return (
        client,
        [r for r in runs if "mlflow.parentRunId" in r.data.tags],
        [r for r in runs if r.data.tags.get("abe.sweep") == "parent"],
    )


@pytest.fixture(scope="module")
def pruned_sweep(tmp_path_factory):
    """(folder, process, study): a median-pruned sweep of 10 trials, shared by the tests
    that need a study with a history."""
    tmp_path = tmp_path_factory.mktemp("pruned")
    proc, study = sweep(tmp_path, "hydra.sweeper.n_trials=10", "hydra.sweeper.pruner=median")
    return tmp_path, proc, study


@pytest.mark.slow  # a real sweep of several trials
def test_median_pruning_stops_bad_trials_and_shows_them_everywhere(pruned_sweep):
    tmp_path, proc, study = pruned_sweep
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
    assert {
        "optuna_history.png",
        "optuna_contour_lr_gamma.png",
        "best_command.txt",
        "optimization_results.yaml",
    } <= artifacts
    best_command = (tmp_path / "sweep" / "best_command.txt").read_text()
    assert f"lr={study.best_params['lr']}" in best_command and "hparams_search" not in best_command
    assert "re-train the search's best trial" in proc.stdout + proc.stderr

    # The same command again resumes the study; a trial an interrupted sweep left
    # RUNNING is marked FAIL instead of staying RUNNING forever.
    abandoned = study.ask()
    _, resumed = sweep(tmp_path, "hydra.sweeper.n_trials=1", name="again")
    assert len(resumed.trials) == 12
    assert resumed.trials[abandoned.number].state == States.FAIL
    assert all(t.state != States.RUNNING for t in resumed.trials)


def test_a_diverging_trial_fails_and_the_sweep_goes_on(tmp_path):
    study = optuna.create_study(
        study_name="lr_gamma-Pendulum-v1", storage=f"sqlite:///{tmp_path / 'optuna.db'}", direction="maximize"
    )
    study.enqueue_trial({"lr": 1e6})  # diverges first; the sweep goes on to the next
    study.enqueue_trial({"lr": 1e-3})
    _, study = sweep(
        tmp_path, "optimizer=sgd", "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=none", "lr=choice(1e-3,1e6)"
    )
    by_lr = {t.params["lr"]: t.state for t in study.trials}
    assert by_lr == {1e-3: States.COMPLETE, 1e6: States.FAIL}
    _, children, _ = mlflow_children(tmp_path)
    failed = [c for c in children if c.info.status == "FAILED"]
    assert failed and all(c.data.tags["error"].startswith("training diverged at") for c in failed)


def test_two_parallel_workers_record_every_trial_once(tmp_path):
    # The search space grows from the command line in the spelling too.
    _, study = sweep(
        tmp_path,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.pruner=none",
        "hydra.sweeper.params.network.width=choice(32,48)",
        "trainer.eval_every=2048",  # no pruner: the evaluations before the last only cost
    )
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state == States.COMPLETE for t in study.trials)
    assert {t.params["network.width"] for t in study.trials} <= {32, 48}
    _, children, _ = mlflow_children(tmp_path)
    assert sorted(float(c.data.params["lr"]) for c in children) == sorted(t.params["lr"] for t in study.trials)
    by_trial = {(float(c.data.params["lr"]), int(c.data.params["network.width"])) for c in children}
    assert by_trial == {
        (t.params["lr"], t.params["network.width"]) for t in study.trials
    }  # each job trained what its trial asked


@pytest.mark.slow  # a real sweep of several trials
def test_a_seed_robust_sweep_confirms_its_best_configurations_on_held_out_seeds(tmp_path):
    proc, study = sweep(
        tmp_path,
        # one at a time, in the sweep's process: joblib's two worker processes would each
        # import the whole stack (the slots run confirmations as they run trials, and
        # test_two_parallel_workers_record_every_trial_once runs them through joblib)
        "n_seeds=2",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.pruner=none",
        "hydra.sweeper.confirm_top=2",
        "hydra.sweeper.confirm_seeds=3",
        # half the budget, one evaluation: the confirmation's bookkeeping is under test here,
        # not what the trials learn
        "trainer.total_steps=2048",
        "trainer.eval_every=2048",
    )
    assert [t.state for t in study.trials] == [States.COMPLETE] * 3
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    confirmation = results["confirmation"]
    ranked = sorted(study.trials, key=lambda t: t.value, reverse=True)
    assert sorted(row["trial"] for row in confirmation) == sorted(t.number for t in ranked[:2])
    assert [row["mean"] for row in confirmation] == sorted((row["mean"] for row in confirmation), reverse=True)
    for row in confirmation:
        assert row["seeds"] == [1000, 1001, 1002]  # the trials trained seeds 0 and 1
        assert len(row["returns"]) == 3 and row["mean"] == pytest.approx(sum(row["returns"]) / 3, abs=1e-3)
        assert row["ci95"][0] <= row["mean"] <= row["ci95"][1]
        assert row["tuning_value"] == study.trials[row["trial"]].value
    winner = confirmation[0]["params"]
    best_command = (tmp_path / "sweep" / "best_command.txt").read_text()
    assert f"lr={winner['lr']}" in best_command and f"gamma={winner['gamma']}" in best_command
    assert "held-out #1" in proc.stderr + proc.stdout
    client, children, parents = mlflow_children(tmp_path)
    [parent] = parents
    trials = [c for c in children if c.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.data.tags["sweep_trials"] == "3"  # confirmation jobs are not trials
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"confirmation.md", "confirmation.png"}
    assert sum("abe_confirmation" in c.data.tags for c in trials) == 2
    # The parent's headline is what best_command.txt trains: the confirmed best on held-out
    # seeds; the search's best (maybe another trial) is kept beside it, and both are named.
    [winner_run] = [c for c in trials if c.data.tags.get("abe_confirmation") == "1"]
    assert parent.data.tags["best_run_id"] == winner_run.info.run_id
    assert parent.data.metrics["eval/return_mean"] == pytest.approx(confirmation[0]["mean"], abs=1e-3)
    assert parent.data.tags["best_is"].startswith(f"the confirmed best: trial #{confirmation[0]['trial']}")
    assert parent.data.metrics["search_best_value"] == pytest.approx(ranked[0].value)
    assert results["best_trial"] == ranked[0].number and results["best_value"] == ranked[0].value
    assert results["confirmed_best"]["trial"] == confirmation[0]["trial"]
    assert results["best_command"]["command"] == best_command.strip()
    assert results["best_command"]["trains"].startswith(f"the confirmed best (#{confirmation[0]['trial']}")


@pytest.mark.slow  # refused by the pruned sweep's study
def test_a_sweep_at_another_budget_never_joins_the_study_silently(pruned_sweep):
    tmp_path = pruned_sweep[0]
    parents_before = len(mlflow_children(tmp_path)[2])
    proc = run_cli(
        "-m",
        *SMALL,
        "trainer.total_steps=2048",
        "hydra.sweeper.n_trials=1",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}",
        f"logger.store_dir={tmp_path / 'store'}",
        f"hydra.sweep.dir={tmp_path / 'other-budget'}",
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.startswith("error: hydra.sweeper.study_name: study 'lr_gamma-Pendulum-v1' in sqlite:///")
        and "(trainer.total_steps=4096 there, 2048 here)" in proc.stderr
        and proc.stderr.count("\n") == 1
    )
    assert not (tmp_path / "other-budget").exists()
    assert len(mlflow_children(tmp_path)[2]) == parents_before  # no parent run for the refused sweep
