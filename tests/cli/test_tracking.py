"""MLflow run status on failure and interruption; secrets; bad tracking URIs."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import mlflow
import pytest

from abe import PROJECT_ROOT
from abe.commands.hydra_edge import check_command_line
from abe.core.secrets import mask_secrets
from abe.tracking.mlflow_run import flatten
from tests.conftest import proc_stat, run_cli

PENDULUM = ["env=pendulum", "trainer.num_envs=2", "trainer.eval_episodes=2", "trainer.progress_bar=false"]


def runs_in(store):
    warnings.filterwarnings("ignore", message=".*noload.*")
    if not (store / "mlflow.db").exists():
        return []
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("Pendulum-v1")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_diverged_run_is_failed_with_the_reason(tmp_path):
    store = tmp_path / "store"
    proc = run_cli(
        *PENDULUM,
        "optimizer=sgd",
        "lr=1e6",
        "trainer.total_steps=4096",
        "trainer.eval_every=2048",
        f"logger.store_dir={store}",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: training diverged at ") and "Traceback" not in proc.stderr
    [run] = runs_in(store)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("training diverged at ")


def test_a_sweep_whose_trials_all_fail_ends_its_parent_failed(tmp_path):
    store = tmp_path / "store"
    proc = run_cli(
        "-m",
        *PENDULUM,
        "optimizer=sgd",
        "lr=1e6",
        "seed=0,1",
        "trainer.total_steps=4096",
        "trainer.eval_every=2048",
        f"logger.store_dir={store}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 1
    assert proc.stderr.count("error: training diverged at ") == 2  # each trial says why, then Hydra's report
    runs = runs_in(store)
    [parent] = [r for r in runs if r.data.tags.get("abe.sweep") == "parent"]
    assert parent.info.status == "FAILED"  # FINISHED before: a sweep that found nothing
    # Hydra stops a grid sweep on its first failed job: the parent says why
    assert re.match(r"TrainingDiverged: training diverged at \d+ env steps", parent.data.tags["error"])
    assert sorted(r.info.status for r in runs if r is not parent) == ["FAILED", "FAILED"]


def test_an_optuna_sweep_whose_trials_all_fail_ends_its_parent_failed(tmp_path):
    store = tmp_path / "store"
    proc = run_cli(
        "-m",
        "hparams_search=lr_gamma",
        *PENDULUM,
        "optimizer=sgd",
        "lr=tag(log, interval(1e5, 1e6))",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.confirm_top=0",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'o.db'}",
        "trainer.total_steps=4096",
        "trainer.eval_every=2048",
        f"logger.store_dir={store}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert (
        proc.stderr.splitlines()[-1]
        == "error: no trial of the sweep finished (2 FAIL); each trial's MLflow run says why"
    )
    assert "Traceback" not in proc.stderr  # the stock sweeper ended on study.best_trial's ValueError
    runs = runs_in(store)
    [parent] = [r for r in runs if r.data.tags.get("abe.sweep") == "parent"]
    assert parent.info.status == "FAILED"  # FINISHED before: a sweep that found nothing
    assert parent.data.tags["error"] == "no trial finished; see the trials' runs for why"


def test_sigterm_marks_the_run_killed(tmp_path):
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(PROJECT_ROOT / "run.py"),
            *PENDULUM,
            "trainer.total_steps=10000000",
            "trainer.eval_every=1000",
            f"logger.store_dir={store}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "checkpoints" / "last.pt").exists():  # training has begun
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    [run] = runs_in(store)
    assert run.info.status == "KILLED"


def test_passwords_in_uris_are_masked(make_cfg):
    assert mask_secrets("postgresql://abe:s3cr3t@db:5432/mlflow") == "postgresql://abe:***@db:5432/mlflow"
    assert mask_secrets("http://host:5000") == "http://host:5000"
    params = flatten(make_cfg("logger.tracking_uri=http://u:pw@host:5000", "lr=0.1"))
    assert params["logger.tracking_uri"] == "http://u:***@host:5000" and params["lr"] == "0.1"


@pytest.mark.parametrize(
    "uri,message",
    [
        ("ftp://example/x", "logger.tracking_uri: unsupported URI 'ftp://example/x'; allowed: sqlite:///"),
        ("nonsense", "logger.tracking_uri: unsupported URI 'nonsense'"),
        ("postgres-ql://u:hunter2@h/db", "logger.tracking_uri: unsupported URI 'postgres-ql://u:***@h/db'"),
        ("sqlite:////no/such/folder/mlflow.db", "logger.tracking_uri: folder '/no/such/folder' of the sqlite store"),
    ],
)
def test_malformed_tracking_uri_is_one_line(uri, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_command_line(["env=pendulum", f"logger.tracking_uri={uri}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: " + message) and err.count("\n") == 1
    assert "hunter2" not in err


def test_an_embedded_store_that_cannot_be_made_is_one_line(tmp_path):
    # The helper process opens the embedded store while training starts; its failure
    # still ends the command with one line and exit code 2, and no run anywhere.
    proc = run_cli(
        "env=pendulum",
        "trainer.total_steps=512",
        "trainer.eval_every=256",
        "trainer.num_envs=2",
        "trainer.eval_episodes=2",
        "trainer.progress_bar=false",
        "logger.store_dir=/proc/abe/store",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: logger.store_dir: cannot create '/proc/abe/store' (No such file or directory); "
        "pick a writable folder, or logger=none"
    )


def test_the_runs_of_one_process_get_helpers_forked_from_one_server(make_cfg, tmp_path):
    # A K-seed job has K + 1 runs: each helper is a fork of the server that imported
    # MLflow and torch once, not a fresh interpreter importing them again.
    from abe.tracking import helper, make_tracker

    store = tmp_path / "mlflow.db"
    cfg = make_cfg(*PENDULUM, f"logger.tracking_uri=sqlite:///{store}")
    trackers = [make_tracker(cfg, tmp_path / f"run{i}", [], "cpu") for i in range(3)]
    server = helper._server
    pids = [t.helper_pid for t in trackers if t.run_id]  # known once the run has started
    assert len(set(pids)) == 3
    assert all(int(proc_stat(pid)[1]) == server.process.pid for pid in pids)  # the server's children
    for i, tracker in enumerate(trackers):
        tracker.log_metrics({"eval/return_mean": float(i)}, step=1)
        tracker.finish(None, tmp_path / f"run{i}", "FINISHED")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    runs = {r.info.run_id: r for r in client.search_runs([client.get_experiment_by_name("Pendulum-v1").experiment_id])}
    assert sorted(runs) == sorted(t.run_id for t in trackers)
    assert [runs[t.run_id].info.status for t in trackers] == ["FINISHED"] * 3
    assert [runs[t.run_id].data.metrics["eval/return_mean"] for t in trackers] == [0.0, 1.0, 2.0]
    server.close()  # as at the process's exit: the server ends once its helpers have
    assert server.process.returncode == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    helper._server = None


def test_a_helper_that_hangs_at_the_end_is_killed_and_the_run_kept_for_sync(make_cfg, tmp_path, monkeypatch, capsys):
    # A stopped helper stands for one whose MLflow calls hang: the run's end waits
    # FINISH_TIMEOUT_S, no longer, kills it, and says how to complete the run.
    from abe.tracking import helper, make_tracker

    monkeypatch.setattr(helper, "FINISH_TIMEOUT_S", 2)
    cfg = make_cfg(*PENDULUM, f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    tracker = make_tracker(cfg, tmp_path / "run", [], "cpu")
    assert tracker.run_id
    os.kill(tracker.helper_pid, signal.SIGSTOP)
    start = time.monotonic()
    tracker.finish(None, tmp_path / "run", "FINISHED")
    assert time.monotonic() - start < 30
    assert f"`python -m abe sync {tmp_path / 'run'}` completes it in the store" in capsys.readouterr().err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{tracker.helper_pid}"):
        time.sleep(0.1)  # killed; the server reaps it
    assert not os.path.exists(f"/proc/{tracker.helper_pid}")


def test_a_runs_source_and_command_tag_name_the_command_that_made_it(tracked_run):
    _, run_dir, store = tracked_run
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    tags = client.get_run(json.loads((run_dir / "result.json").read_text())["mlflow_run_id"]).data.tags
    assert tags["mlflow.source.name"] == "run.py"  # was "-c": the helper process's argv
    assert tags["command"].startswith("run.py env=pendulum lr=3e-4 gamma=0.95 trainer.total_steps=256")
