"""Multiruns (`-m`): one MLflow parent run per sweep, one nested child per job,
also when the jobs run in parallel processes (joblib launcher)."""

import shlex
import warnings

import mlflow
import pytest

from tests.cli.test_readme import readme_commands
from tests.conftest import TINY, run_cli

SWEEP_TINY = [o for o in TINY if not o.startswith("logger")]


def sweep_runs(store, experiment_name: str):
    warnings.filterwarnings("ignore", message=".*noload.*")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("abe.sweep") == "parent"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return client, parents[0], children


# The README's grid (tests/cli/test_readme.py leaves every `-m env=` command to this test:
# one, or this line fails), and a smaller one whose jobs run in two joblib worker processes.
[README_GRID] = readme_commands("python run.py -m env=")
GRIDS = {  # id: (MLflow experiment, the sweep's arguments)
    "readme-grid": ("HalfCheetah-v5", shlex.split(README_GRID.removeprefix("python run.py -m "))),
    "joblib-2-processes": (
        "Pendulum-v1",
        ["env=pendulum", "lr=1e-3,3e-4", "gamma=0.9,0.99", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    ),
}


@pytest.mark.parametrize(("experiment", "grid"), GRIDS.values(), ids=GRIDS.keys())
def test_sweep_is_one_parent_run_with_nested_children(tmp_path, experiment, grid):
    store, sweep_dir = tmp_path / "store", tmp_path / "sweep"
    proc = run_cli(
        "-m",
        *grid,
        *SWEEP_TINY,
        f"logger.store_dir={store}",
        f"hydra.sweep.dir={sweep_dir}",
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, parent, children = sweep_runs(store, experiment)
    assert parent.info.status == "FINISHED"
    values = {a.split("=")[0]: a.split("=")[1].split(",") for a in grid if a.startswith(("lr=", "gamma="))}
    expected = sorted((str(float(lr)), str(float(gamma))) for lr in values["lr"] for gamma in values["gamma"])
    assert sorted((c.data.params["lr"], c.data.params["gamma"]) for c in children) == expected
    assert all(c.info.status == "FINISHED" for c in children)
    # MLflow's Source and the command tag name what made each run, also in a joblib worker
    assert {c.data.tags["mlflow.source.name"] for c in children} == {"run.py"}
    assert {c.data.tags["command"].split()[0] for c in children} == {"run.py"}
    best = max(children, key=lambda c: c.data.metrics["eval/return_mean"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.params["best.lr"] == best.data.params["lr"]
    assert parent.data.metrics["eval/return_mean"] == best.data.metrics["eval/return_mean"]
    assert parent.data.tags["sweep_trials"] == str(len(expected)) and parent.data.tags["sweep_failed"] == "0"
    assert "sweep_objective.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert (sweep_dir / "sweep_objective.png").stat().st_size > 10_000
