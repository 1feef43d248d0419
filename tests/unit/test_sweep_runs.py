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


def test_an_owner_is_gone_once_its_process_has_ended_even_unreaped():
    # A sweeper that died but was not yet reaped (a zombie) left its trials to the next
    # one: is_gone says so; one alive, one on another host, and a malformed owner do not.
    import socket
    import subprocess
    import sys
    import time

    from abe.core.processes import alive, is_gone, this_process

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # it exits; not waited for, it stays a zombie
    host = socket.gethostname()
    assert is_gone(f"{host}:{child.pid}") and not is_gone(this_process())
    assert not is_gone(f"another-{host}:{child.pid}") and not is_gone(f"{host}:not-a-pid") and is_gone(None)
    child.wait()
    assert is_gone(f"{host}:{child.pid}")
