"""Multiruns (`-m`): one MLflow parent run per sweep, one nested child per job,
also when the jobs run in parallel processes (joblib launcher)."""

import warnings

import mlflow
import pytest

from tests.conftest import TINY, run_cli

SWEEP_TINY = [o for o in TINY if not o.startswith("logger")]


def sweep_runs(store):
    warnings.filterwarnings("ignore", message=".*noload.*")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("Pendulum-v1")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("abe.sweep") == "parent"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return client, parents[0], children


@pytest.mark.parametrize(
    "launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]], ids=["basic", "joblib-2-processes"]
)
def test_sweep_is_one_parent_run_with_nested_children(tmp_path, launcher):
    store, sweep_dir = tmp_path / "store", tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "env=pendulum",
        "lr=1e-3,3e-4",
        "gamma=0.9,0.99",
        *SWEEP_TINY,
        *launcher,
        f"logger.store_dir={store}",
        f"hydra.sweep.dir={sweep_dir}",
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, parent, children = sweep_runs(store)
    assert parent.info.status == "FINISHED"
    assert sorted((c.data.params["lr"], c.data.params["gamma"]) for c in children) == [
        ("0.0003", "0.9"),
        ("0.0003", "0.99"),
        ("0.001", "0.9"),
        ("0.001", "0.99"),
    ]
    assert all(c.info.status == "FINISHED" for c in children)
    # MLflow's Source and the command tag name what made each run, also in a joblib worker
    assert {c.data.tags["mlflow.source.name"] for c in children} == {"run.py"}
    assert {c.data.tags["command"].split()[0] for c in children} == {"run.py"}
    best = max(children, key=lambda c: c.data.metrics["eval/return_mean"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.params["best.lr"] == best.data.params["lr"]
    assert parent.data.metrics["eval/return_mean"] == best.data.metrics["eval/return_mean"]
    assert parent.data.tags["sweep_trials"] == "4" and parent.data.tags["sweep_failed"] == "0"
    assert "sweep_objective.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert (sweep_dir / "sweep_objective.png").stat().st_size > 10_000
