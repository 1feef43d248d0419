"""A trial the sweeper ends as FAIL, or a sweep's end, leaves none of the trial's MLflow
runs RUNNING (issue: a killed loky worker's neighbour kept its run RUNNING forever)."""

import warnings

import mlflow
from omegaconf import OmegaConf

from abe.tracking.sweep_parent import end_running_runs


def test_a_failed_trials_running_runs_end_killed_and_its_neighbours_are_left_alone(tmp_path, monkeypatch):
    warnings.filterwarnings("ignore", message=".*noload.*")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # connect() sets it for the sweep's processes
    logger = {"name": "mlflow", "tracking_uri": uri, "store_dir": str(tmp_path), "experiment": "e", "run_name": None}
    config = OmegaConf.create({"logger": {**logger, "tags": {}, "log_model": False}})
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("e")
    sweep = tmp_path / "sweep"

    def run(run_dir, status="RUNNING"):
        made = client.create_run(experiment, tags={"run_dir": str(run_dir)}).info.run_id
        if status != "RUNNING":
            client.set_terminated(made, status)
        return made

    job, seed, done, neighbour = (
        run(sweep / "3"),
        run(sweep / "3" / "seed_0"),
        run(sweep / "3", "FINISHED"),
        run(sweep / "30"),
    )
    assert end_running_runs(config, sweep / "3", "trial #3 failed: TerminatedWorkerError") == 2
    status = {r: client.get_run(r).info.status for r in (job, seed, done, neighbour)}
    assert status == {job: "KILLED", seed: "KILLED", done: "FINISHED", neighbour: "RUNNING"}
    assert client.get_run(seed).data.tags["error"] == "trial #3 failed: TerminatedWorkerError"
    assert end_running_runs(config, sweep, "the sweep ended while this run was RUNNING") == 1  # the neighbour
