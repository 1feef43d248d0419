"""Faults with real processes: a tracking server that dies mid-run loses nothing, and
`python -m abe sync` completes the run in the store once the server is back."""

import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import optuna
import pytest

from abe import PROJECT_ROOT
from abe.sweeps.pruning import JOB_ATTR
from tests.conftest import TINY, USER_DIR, MlflowServer, free_port, run_cli, run_module, start_cli

PENDULUM = ["env=pendulum", "trainer.num_envs=8", "trainer.eval_episodes=2", "trainer.progress_bar=false"]
# One tracked run: evaluations at 10k steps (where the server-kill test kills the server), 20k and 30k.
TRACKED_RUN = [*PENDULUM, "trainer.total_steps=30000", "trainer.eval_every=10000"]

# Trials of a few hundred steps: two sweepers then write to the study and the store
# almost all the time, the worst case for sqlite's one-writer lock.
TINY_SWEEP = ["env=pendulum", *(o for o in TINY if not o.startswith("logger"))]


def tracked_at(url: str, run_dir) -> list[str]:
    return [f"logger.tracking_uri={url}", f"hydra.run.dir={run_dir}"]


def test_a_tracking_server_killed_mid_run_loses_nothing_and_sync_completes_the_run(tmp_path, monkeypatch):
    server = MlflowServer(tmp_path / "server").start()
    run_dir = tmp_path / "run"
    try:
        training = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "run.py"), *TRACKED_RUN, *tracked_at(server.url, run_dir)],
            cwd=USER_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints" / "last.pt").exists():  # the first evaluation went to the server
            assert training.poll() is None and time.monotonic() < deadline, training.stderr.read()
            time.sleep(0.1)
        server.kill()
        _, err = training.communicate(timeout=180)
        ended = time.time()
        assert training.returncode == 0, err[-2000:]
        # training went on; the command ended within seconds of its result, said so once, and left no process
        assert ended - (run_dir / "result.json").stat().st_mtime < 15
        assert err.count("logger: the tracking server cannot be reached") == 1, err
        assert f"logger: run kept in {run_dir}/.tracking: `python -m abe sync {run_dir}`" in err
        try:
            os.killpg(training.pid, 0)
            raise AssertionError("a process of the run outlived it (the MLflow helper?)")
        except ProcessLookupError:
            pass
        assert (run_dir / ".tracking" / "journal.pkl").exists()

        server.start()  # the same store, back
        proc = run_module("sync", str(run_dir))
        assert proc.returncode == 0, proc.stderr[-2000:]
        result = json.loads((run_dir / "result.json").read_text())
        run_id = result["mlflow_run_id"]
        assert f"{run_dir}: run {run_id} completed in {server.url}, status FINISHED" in proc.stdout
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)  # for runs:/ URIs
        client = mlflow.MlflowClient(tracking_uri=server.url)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run_id, "eval/return_mean")
        assert [(m.step, m.value) for m in history] == [
            (e["env_steps"], e["eval/return_mean"]) for e in result["evaluations"]
        ]  # every evaluation, once
        assert {a.path for a in client.list_artifacts(run_id)} >= {"result.json", "checkpoints", "hydra"}
        policy = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
        assert policy is not None and not (run_dir / ".tracking").exists()

        again = run_module("sync", str(run_dir))  # nothing is left to send: nothing changes
        assert again.returncode == 0 and again.stdout.startswith("nothing to sync: no kept run in ")
        assert len(client.get_metric_history(run_id, "eval/return_mean")) == len(history)
    finally:
        server.kill()


def test_a_server_whose_artifact_store_refuses_uploads_fails_the_run_in_one_line_not_offline(tmp_path):
    # The server answers, with HTTP 500 on every upload: its artifacts destination is a file,
    # not a folder. That is no lost server to wait out (journal, sync) but a failed run.
    server = MlflowServer(tmp_path / "server")
    server.folder.mkdir(parents=True)
    (server.folder / "artifacts").write_text("not a folder")
    server.start()
    run_dir = tmp_path / "run"
    try:
        proc = run_cli(*TINY_SWEEP, *tracked_at(server.url, run_dir), "logger.log_model=true")
        assert proc.returncode == 2, proc.stderr[-2000:]
        line = (
            f"error: logger: the MLflow server {server.url} could not store the run's artifacts (it answers uploads "
            f"with HTTP 5xx: is its --artifacts-destination writable, with space?); the run's files are in {run_dir}"
        )
        assert proc.stderr.strip().splitlines() == [line]
        client = mlflow.MlflowClient(tracking_uri=server.url)
        (run,) = client.search_runs([client.get_experiment_by_name("Pendulum-v1").experiment_id])
        assert run.info.status == "FAILED" and run.data.tags["error"] == line.removeprefix("error: ")
        assert (run_dir / "result.json").exists() and not (run_dir / ".tracking").exists()
    finally:
        server.kill()


def test_sync_needs_a_target():
    proc = run_module("sync")
    assert proc.returncode == 2
    assert proc.stderr == "error: sync: name run dirs, or --all for every kept run under outputs/\n"


def test_a_tracking_server_down_at_start_is_one_line_and_no_run(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = run_cli(*TRACKED_RUN, *tracked_at(url, tmp_path / "run"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == (
        f"error: logger.tracking_uri: no MLflow server answers at {url} (ConnectionError); start one with "
        "`mlflow server`, or use logger.tracking_uri=null for the embedded store\n"
    )
    assert not (tmp_path / "run").exists()


def _group_is_gone(pgid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]


@pytest.mark.parametrize(
    "launcher,stop,resume",
    [(["hydra.sweeper.n_jobs=1"], "SIGTERM", True), (JOBLIB, "SIGTERM", False), (JOBLIB, "Ctrl-C", False)],
    ids=["basic-SIGTERM", "joblib-SIGTERM", "joblib-Ctrl-C"],
)
def test_a_stopped_sweep_leaves_nothing_running_and_the_study_resumes(tmp_path, launcher, stop, resume):
    store, sweep_dir, study = tmp_path / "store", tmp_path / "sweep", tmp_path / "optuna.db"
    command = [sys.executable, str(PROJECT_ROOT / "run.py"), "-m", "hparams_search=lr_gamma", *launcher]
    command += [
        *PENDULUM,
        "trainer.total_steps=50000",  # 5 s or more: the stop comes once 5000 of them are done
        "trainer.eval_every=5000",
        f"hydra.sweeper.storage=sqlite:///{study}",
    ]
    command += ["hydra.sweeper.confirm_top=0", f"logger.store_dir={store}", f"hydra.sweep.dir={sweep_dir}"]
    sweep = start_cli(*command[2:], "hydra.sweeper.n_trials=4", env={"MLFLOW_TRACKING_URI": ""})
    training = len(launcher) - 1 if len(launcher) > 1 else 1  # trials training at once
    deadline = time.monotonic() + 180
    while len(list(sweep_dir.glob("*/checkpoints/last.pt"))) < training:
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.stderr.read()[-3000:]
        time.sleep(0.2)
    if stop == "SIGTERM":  # to the sweep's process, as `kill` or a scheduler sends it
        sweep.send_signal(signal.SIGTERM)
    else:  # a terminal's Ctrl-C: SIGINT to the whole foreground process group
        os.killpg(sweep.pid, signal.SIGINT)
    _, err = sweep.communicate(timeout=60)
    assert sweep.returncode == 130, err[-3000:]
    assert _group_is_gone(sweep.pid, within=15), "a process of the sweep outlived it"
    before = [t.state.name for t in load_trials(study)]
    assert "RUNNING" not in before and "FAIL" in before, before
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("Pendulum-v1").experiment_id])
    assert runs and all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    parents = [(r.info.status, r.data.tags.get("error")) for r in runs if r.data.tags.get("abe.sweep") == "parent"]
    assert [p[0] for p in parents] == ["KILLED"], (parents, err[-2000:])

    if not resume:  # the same for every way of stopping: tested once, where no loky pool starts
        return
    # the same command goes on with the same study, its job dir numbered after the others
    again = run_cli(*command[2:], "hydra.sweeper.n_trials=1", env={"MLFLOW_TRACKING_URI": ""})
    assert again.returncode == 0, again.stderr[-3000:]
    after = [t.state.name for t in load_trials(study)]
    assert after[: len(before)] == before and after[len(before) :] == ["COMPLETE"], after
    assert (sweep_dir / str(len(before)) / "result.json").exists()


def two_trials_training(tmp_path, *extra: str, steps: int = 200_000) -> subprocess.Popen:
    """A joblib sweep of long Pendulum trials in two slots (study, store and sweep dir in
    tmp_path), returned once both trials train."""
    command = ["-m", "hparams_search=lr_gamma", *JOBLIB, *PENDULUM]
    command += [f"trainer.total_steps={steps}", "trainer.eval_every=5000", "hydra.sweeper.confirm_top=0"]
    command += [f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}", f"logger.store_dir={tmp_path / 'store'}"]
    sweep = start_cli(*command, *extra, f"hydra.sweep.dir={tmp_path / 'sweep'}", env={"MLFLOW_TRACKING_URI": ""})
    deadline = time.monotonic() + 180
    while len(list((tmp_path / "sweep").glob("*/checkpoints/last.pt"))) < 2:  # both trials train
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.stderr.read()[-3000:]
        time.sleep(0.2)
    return sweep


def test_a_killed_joblib_worker_leaves_no_run_of_its_pool_running(tmp_path):
    # loky stops its whole pool when one worker dies: the neighbour's trial fails too, and
    # its job never gets to end its MLflow run; the sweeper ends both.
    store, study = tmp_path / "store", tmp_path / "optuna.db"
    sweep = two_trials_training(tmp_path, "hydra.sweeper.pruner=none", "hydra.sweeper.n_trials=2")
    worker = int(load_trials(study)[0].user_attrs[JOB_ATTR].rpartition(":")[2])
    os.kill(worker, signal.SIGKILL)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 1 and "no trial of the sweep finished (2 FAIL)" in err, err[-3000:]
    assert _group_is_gone(sweep.pid, within=15), "a process of the sweep outlived it"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("Pendulum-v1").experiment_id])
    trials = [r for r in runs if r.data.tags.get("abe.sweep") != "parent"]
    assert len(trials) == 2 and {r.info.status for r in trials} == {"KILLED"}, [r.info.status for r in runs]
    # the killed worker's run is ended by its tracking helper, the neighbour's by the sweeper
    killed, neighbour = sorted(r.data.tags["error"] for r in trials)
    assert killed == "the training process ended without reporting (killed?)"
    assert neighbour.startswith("trial #") and "failed: TerminatedWorkerError" in neighbour, neighbour


def test_a_sweeper_killed_outright_leaves_nothing_running_and_the_next_sweep_ends_its_runs(tmp_path):
    store, study = tmp_path / "store", tmp_path / "optuna.db"
    sweep = two_trials_training(tmp_path, "hydra.sweeper.n_trials=4", steps=1_000_000)
    sweep.kill()  # SIGKILL to the sweeper alone: no handler runs
    sweep.wait(timeout=30)  # (its stderr stays open until its workers exit)
    # its joblib workers notice within a second, end their runs and exit; nothing trains on
    # (a trial has 1M steps: minutes of training left)
    assert _group_is_gone(sweep.pid, within=90), "a process of the killed sweep outlived it"
    assert [t.state.name for t in load_trials(study)] == ["FAIL", "FAIL"]  # the jobs said so themselves
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("Pendulum-v1").experiment_id])
    trials = {r.info.status for r in runs if r.data.tags.get("abe.sweep") != "parent"}
    assert trials == {"KILLED"}, [(r.info.run_name, r.info.status) for r in runs]
    [parent] = [r for r in runs if r.data.tags.get("abe.sweep") == "parent"]
    assert parent.info.status == "RUNNING"  # no process of it is left to say otherwise

    # the next sweep in the same MLflow experiment (another study) ends the dead one's parent
    again = run_cli(
        "-m",
        "hparams_search=lr_gamma",
        *TINY_SWEEP,
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.confirm_top=0",
        f"hydra.sweeper.storage=sqlite:///{study}",
        "hydra.sweeper.study_name=next",
        f"logger.store_dir={store}",
        f"hydra.sweep.dir={tmp_path / 'next'}",
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert again.returncode == 0, again.stderr[-3000:]
    ended = client.get_run(parent.info.run_id)
    assert ended.info.status == "KILLED" and ended.data.tags["error"].endswith("died before the sweep ended")


def load_trials(study) -> list:
    return optuna.load_study(study_name="lr_gamma-Pendulum-v1", storage=f"sqlite:///{study}").trials


def test_two_sweepers_on_one_sqlite_study_and_store_lose_no_trial(tmp_path):
    store, study = tmp_path / "store", tmp_path / "optuna.db"
    command = [sys.executable, str(PROJECT_ROOT / "run.py"), "-m", "hparams_search=lr_gamma", *TINY_SWEEP]
    command += ["hydra.sweeper.n_trials=4", "hydra.sweeper.confirm_top=0", "hydra.sweeper.pruner=none"]
    command += [f"hydra.sweeper.storage=sqlite:///{study}"]
    command += [f"logger.store_dir={store}"]
    sweepers = [
        subprocess.Popen(
            [*command, f"hydra.sweep.dir={tmp_path / f'sweep{i}'}"],
            cwd=USER_DIR,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        )
        for i in range(2)
    ]
    errors = [s.communicate(timeout=600)[1] for s in sweepers]
    assert [s.returncode for s in sweepers] == [0, 0], [e[-2000:] for e in errors]
    assert not any("locked" in e for e in errors)
    assert [t.state.name for t in load_trials(study)] == ["COMPLETE"] * 8  # every trial of both, none lost
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("Pendulum-v1").experiment_id])
    parents = [r for r in runs if r.data.tags.get("abe.sweep") == "parent"]
    assert len(parents) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert sorted(
        len([r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]) for p in parents
    ) == [4, 4]


@pytest.fixture
def small_disk(tmp_path):
    """A 160 KB tmpfs: room for the run's first checkpoint (99 KB on Pendulum) and its
    Hydra files, not for a second one beside it (written whole, then renamed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the suite runs as another user here")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)  # the test's own Optuna engine may hold a file


NO_URI = {"MLFLOW_TRACKING_URI": ""}  # the embedded store under logger.store_dir


def fill(disk, leave: int) -> None:
    """Take all of `disk`'s free space but `leave` bytes (a file called filler)."""
    stat = os.statvfs(disk)
    (disk / "filler").write_bytes(b"0" * (stat.f_bavail * stat.f_frsize - leave))


def test_a_full_disk_under_the_sqlite_study_is_one_line_and_the_same_command_goes_on(tmp_path, small_disk):
    study, store = f"sqlite:///{small_disk / 'optuna.db'}", tmp_path / "store"
    optuna.create_study(study_name="lr_gamma-Pendulum-v1", storage=study, direction="maximize")  # 115 KB
    fill(small_disk, leave=12 * 1024)
    command = ["-m", "hparams_search=lr_gamma", *TINY_SWEEP, "hydra.sweeper.confirm_top=0"]
    command += [f"hydra.sweeper.storage={study}", f"logger.store_dir={store}"]
    proc = run_cli(*command, "hydra.sweeper.n_trials=50", f"hydra.sweep.dir={tmp_path / 'sweep'}", env=NO_URI)
    assert proc.returncode == 1
    assert proc.stderr == (
        f"error: hydra.sweeper.storage: cannot write to {study} ((sqlite3.OperationalError) database or disk is "
        "full); the study keeps every trial it recorded: make room (or fix the storage) and run the same command "
        "to go on\n"
    )
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("Pendulum-v1").experiment_id])
    assert runs and all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    [parent] = [r for r in runs if r.data.tags.get("abe.sweep") == "parent"]
    assert parent.info.status == "FAILED" and "database or disk is full" in parent.data.tags["error"]

    (small_disk / "filler").unlink()  # room again: the same command goes on with the same study
    again = run_cli(*command, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'again'}", env=NO_URI)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "COMPLETE" in [
        t.state.name for t in optuna.load_study(study_name="lr_gamma-Pendulum-v1", storage=study).trials
    ]


def test_a_tracking_journal_that_fills_its_disk_fails_the_run_with_its_path_and_mlflow_keeps_all(tmp_path, small_disk):
    # The run dir has room; its journal (.tracking/, MLflow's messages kept until the run is
    # complete in the store) lives on a disk with room for its first messages only.
    run_dir, store = tmp_path / "run", tmp_path / "store"
    run_dir.mkdir()
    (run_dir / ".tracking").symlink_to(small_disk)
    fill(small_disk, leave=8 * 1024)
    steps = ["trainer.total_steps=4096", "trainer.eval_every=256", "trainer.num_envs=2", "trainer.eval_episodes=1"]
    proc = run_cli(
        *PENDULUM[:1], *steps, "trainer.progress_bar=false", f"logger.store_dir={store}", f"hydra.run.dir={run_dir}",
        env=NO_URI,
    )  # fmt: skip
    journal = run_dir / ".tracking" / "journal.pkl"
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == f"error: cannot write {journal}: No space left on device"
    assert "Traceback" not in proc.stderr and not journal.exists()  # no half-written journal left
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("Pendulum-v1").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["error"] == f"cannot write {journal}: No space left on device"
    # training went on: every evaluation reached MLflow, and the run's own files are whole
    assert len(client.get_metric_history(run.info.run_id, "eval/return_mean")) == 16
    assert json.loads((run_dir / "result.json").read_text())["env_steps"] == 4096


def test_a_full_disk_is_one_line_keeps_the_last_checkpoint_and_resume_finishes_once_there_is_room(tmp_path, small_disk):
    run_dir, store = small_disk / "run", tmp_path / "store"
    steps = ["trainer.total_steps=4096", "trainer.eval_every=2048", "trainer.num_envs=2", "trainer.eval_episodes=1"]
    short = [*PENDULUM[:1], *steps, "trainer.progress_bar=false", f"logger.store_dir={store}"]
    proc = run_cli(*short, f"hydra.run.dir={run_dir}", env={"MLFLOW_TRACKING_URI": ""})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: cannot write {run_dir}/checkpoints/last.pt: No space left on device"
    ), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.pt"]  # no half-written file
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("Pendulum-v1").experiment_id])[0]
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == f"cannot write {run_dir}/checkpoints/last.pt: No space left on device"

    subprocess.run(["mount", "-o", "remount,size=10m", str(small_disk)], check=True)  # space freed
    resumed = run_module("resume", str(run_dir), "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run_dir / "result.json").read_text())["env_steps"] == 4096
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
