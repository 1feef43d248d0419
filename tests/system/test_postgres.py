"""An Optuna study in a real PostgreSQL server, shared by two parallel workers."""

import optuna

from tests.cli.test_optuna import SMALL, States, mlflow_children
from tests.conftest import run_cli


def test_postgresql_study_with_two_parallel_workers(tmp_path, postgres):
    proc = run_cli(
        "-m",
        *SMALL,
        f"hydra.sweeper.storage={postgres}",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.pruner=median",
        f"logger.store_dir={tmp_path / 'store'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        env={"MLFLOW_TRACKING_URI": ""},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="lr_gamma-Pendulum-v1", storage=postgres)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]  # every trial once
    assert all(t.state in (States.COMPLETE, States.PRUNED) for t in study.trials)
    assert all(t.intermediate_values for t in study.trials)  # reports crossed the job boundary
    _, children, _ = mlflow_children(tmp_path)
    assert len(children) == 4
