"""Sweeps without a batch barrier, on real engines: joblib workers (a killed trial's slot
is refilled), a two-node Ray cluster with PostgreSQL and an MLflow server, and submitit."""

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import mlflow
import optuna
import pytest

from abe import PROJECT_ROOT
from abe.sweeps.pruning import FAIL_ATTR, JOB_ATTR, RAY_NODE_ATTR
from tests.cli.test_optuna import SMALL, States
from tests.cli.test_readme import readme_commands
from tests.conftest import USER_DIR, MlflowServer, free_port, proc_stat, run_cli

pytestmark = pytest.mark.slow  # real engines: a Ray cluster, loky and submitit workers

STUDY = "lr_gamma-Pendulum-v1"
SHORT, LONG = 2048, 40000  # env steps: trials of ~5 s and ~20 s (with process start and MLflow)


def enqueue(storage: str, lengths: list[int]) -> None:
    """Trials the sweep will run first, in this order, with these budgets."""
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    for i, steps in enumerate(lengths):
        study.enqueue_trial({"lr": 3e-4 + 1e-5 * i, "gamma": 0.95, "trainer.total_steps": steps})


def sweep_command(tmp_path: Path, storage: str, *extra: str, steps: str = f"choice({SHORT},{LONG})") -> list[str]:
    return [
        "-m",
        *(o for o in SMALL if not o.startswith("trainer.total_steps=")),
        f"trainer.total_steps={steps}",
        "trainer.eval_every=1024",
        "hydra.sweeper.pruner=none",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        *extra,
    ]


def test_a_slot_is_refilled_the_moment_its_trial_ends_even_when_the_trial_was_killed(tmp_path):
    storage, store = f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "store"
    enqueue(storage, [LONG, SHORT, SHORT, SHORT, SHORT])
    joblib = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]
    command = sweep_command(tmp_path, storage, *joblib, "hydra.sweeper.n_trials=5", f"logger.store_dir={store}")
    sweep = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "run.py"), *command],
        cwd=USER_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    study = optuna.load_study(study_name=STUDY, storage=storage)
    deadline = time.monotonic() + 240
    while sum(t.state == States.COMPLETE for t in study.get_trials()) < 2:  # trials 1 and 2
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.stderr.read()[-3000:]
        time.sleep(0.3)
    long = study.get_trials()[0]
    assert long.state == States.RUNNING  # no barrier: two short trials ended while it trains
    killed_at = datetime.now()  # Optuna's clock
    os.kill(int(long.user_attrs[JOB_ATTR].rpartition(":")[2]), signal.SIGKILL)  # as the OOM killer does
    _, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err[-3000:]

    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]  # the sweep went on to n_trials
    assert trials[0].state == States.FAIL and "terminated" in trials[0].user_attrs[FAIL_ATTR].lower()
    assert trials[4].state == States.COMPLETE  # asked after the kill: the slot was refilled
    assert trials[4].datetime_start > killed_at
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("Pendulum-v1").experiment_id])
    status = {r.data.params["lr"]: r.info.status for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert status[str(trials[0].params["lr"])] == "KILLED"  # by its helper, which saw its trainer die
    # trial 3 (loky stops every worker when one dies) may be killed before its run exists
    assert len(status) >= 4 and "RUNNING" not in status.values() and all(r.info.status != "RUNNING" for r in runs)


class RayCluster(NamedTuple):
    address: str
    home: str
    worker_session: int  # the worker node's processes are those of this session


def session_of(pid: int) -> int | None:
    """The session id of a process of this machine (None once it is gone)."""
    stat = proc_stat(pid)
    return int(stat[3]) if stat else None


def kill_session(sid: int) -> None:
    """SIGKILL every process of a session at once, as a machine that dies takes all of them:
    not only the process group, since Ray starts each worker in a group of its own."""
    for pid in [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]:
        if session_of(pid) == sid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Two Ray nodes of two CPUs each on this machine (a head and a worker that joins it),
    started where the tests' commands run: jobs write relative paths there. One cluster for
    this file's Ray tests, in file order: the README's sweep uses both nodes, then the
    node-kill test kills the worker node. The worker node runs in a session of its own, so
    its processes are the ones of that session."""
    ray = str(Path(sys.executable).parent / "ray")
    port = free_port()
    # A home of its own: a local ray.init() (Ray 2.60) leaves ~/.ray/auth_token, and a node
    # that finds one cannot join a head started without it (InvalidAuthToken)
    home = tmp_path_factory.mktemp("ray-home")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HOME": str(home)}
    start = [ray, "start", "--num-cpus=2", "--disable-usage-stats"]
    worker = None
    try:
        head = subprocess.run(
            [*start, "--head", f"--port={port}", "--include-dashboard=false"],
            cwd=USER_DIR, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert head.returncode == 0, head.stderr[-2000:]
        worker = subprocess.Popen(
            [*start, f"--address=127.0.0.1:{port}"],
            cwd=USER_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        assert worker.wait(timeout=120) == 0, worker.stderr.read()[-2000:]  # the node has joined
        yield RayCluster(f"127.0.0.1:{port}", str(home), worker.pid)
    finally:
        if worker is not None:
            kill_session(worker.pid)
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_the_readmes_ray_sweep_on_a_two_node_cluster_with_postgresql_and_an_mlflow_server(
    tmp_path, postgres, ray_cluster
):
    address, home = ray_cluster.address, ray_cluster.home
    [command] = [c for c in readme_commands() if "hydra/launcher=ray" in c]
    places = {"HEAD:6379": address, "postgresql+psycopg2://abe@db/optuna": postgres}
    server = MlflowServer(tmp_path / "server").start()
    places |= {"http://mlflow:5000": server.url, "/shared/abe/hc-lr-gamma": str(tmp_path / "sweep")}
    places |= {"n_seeds=4": "n_seeds=2"}  # the README's 4 seeds per trial, 2 here: half the runs to track
    for placeholder, here in places.items():
        assert placeholder in command
        command = command.replace(placeholder, here)
    small = ["trainer.total_steps=256", "trainer.num_envs=2", "trainer.eval_every=128", "trainer.eval_episodes=1"]
    small += [
        "trainer.progress_bar=false",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.confirm_top=0",
        "hydra.sweeper.pruner=none",
    ]
    try:
        proc = run_cli(*shlex.split(command.removeprefix("python run.py ")), *small, env={"HOME": home}, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        trials = optuna.load_study(study_name="lr_gamma-HalfCheetah-v5", storage=postgres).get_trials()
        assert [t.number for t in trials] == [0, 1] and all(t.state == States.COMPLETE for t in trials)
        assert all(t.intermediate_values for t in trials)  # reports crossed from the Ray workers
        # two CPUs per node and per trial, both trials at once: both nodes trained
        assert len({t.user_attrs[RAY_NODE_ATTR] for t in trials}) == 2
        client = mlflow.MlflowClient(tracking_uri=server.url)
        runs = client.search_runs([client.get_experiment_by_name("HalfCheetah-v5").experiment_id])
        parents = [r for r in runs if r.data.tags.get("abe.sweep") == "parent"]
        assert len(parents) == 1 and all(r.info.status == "FINISHED" for r in runs)
        jobs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
        seeds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in {j.info.run_id for j in jobs}]
        assert len(jobs) == 2 and len(seeds) == 4  # every trial once, its 2 seeds nested under it
    finally:
        server.kill()


def test_a_ray_worker_node_killed_mid_trial_fails_that_trial_and_the_sweep_goes_on(tmp_path, ray_cluster):
    """Two nodes of two CPUs, one trial per node; the worker node (all its processes: raylet,
    the trial's worker) killed outright while its trial trains: that trial FAIL with Ray's NodeDiedError,
    its MLflow run KILLED, the sweep goes on to its third trial on the node left, nothing RUNNING.
    The MLflow store is given only by the sweeper's MLFLOW_TRACKING_URI (the nodes' environment
    has none): the trials track to it too, nested under the sweep's parent."""
    storage, store = f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HOME": ray_cluster.home, "MLFLOW_TRACKING_URI": uri}
    enqueue(storage, [LONG, LONG, SHORT])
    ray_launcher = [
        "hydra/launcher=ray",
        f"hydra.launcher.ray.init.address={ray_cluster.address}",
        "+hydra.launcher.ray.remote.num_cpus=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=3",
    ]
    errors, output = tmp_path / "sweep.stderr", tmp_path / "sweep.stdout"
    with errors.open("w") as stderr, output.open("w") as stdout:
        sweep = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "run.py"), *sweep_command(tmp_path, storage, *ray_launcher)],
            cwd=USER_DIR, stdout=stdout, stderr=stderr, env=env,
        )  # fmt: skip
    try:
        study = optuna.load_study(study_name=STUDY, storage=storage)
        deadline = time.monotonic() + 300
        while True:  # the worker node's trial trains (the head's may be slower to start, or done)
            on_worker = [
                t
                for t in study.get_trials()
                if t.state == States.RUNNING
                and t.intermediate_values
                and session_of(int(t.user_attrs.get(JOB_ATTR, ":0").rpartition(":")[2])) == ray_cluster.worker_session
            ]
            if on_worker:
                break
            assert sweep.poll() is None and time.monotonic() < deadline, errors.read_text()[-3000:]
            time.sleep(0.5)
        kill_session(ray_cluster.worker_session)
        assert sweep.wait(timeout=400) == 0, errors.read_text()[-3000:]
        trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
        assert [t.state for t in trials].count(States.COMPLETE) == 2 and len(trials) == 3
        (lost,) = [t for t in trials if t.state == States.FAIL]
        assert lost.number == on_worker[0].number
        assert lost.user_attrs[FAIL_ATTR].startswith("NodeDiedError: "), lost.user_attrs
        # the third trial ran on the node that was left, not the lost one
        assert (
            trials[2].state == States.COMPLETE and trials[2].user_attrs[RAY_NODE_ATTR] != lost.user_attrs[RAY_NODE_ATTR]
        )
        assert f"MLflow store {uri} is a file on this machine: trials on other machines reach it" in output.read_text()
        client = mlflow.MlflowClient(tracking_uri=uri)
        runs = client.search_runs([client.get_experiment_by_name("Pendulum-v1").experiment_id])
        assert runs and not [r for r in runs if r.info.status == "RUNNING"], [
            (r.info.run_name, r.info.status) for r in runs
        ]
        [parent] = [r for r in runs if r.data.tags.get("abe.sweep") == "parent"]
        assert sorted(
            r.data.params["lr"] for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
        ) == (
            sorted(str(t.params["lr"]) for t in trials)
        )  # every trial, the lost one too, nested under the sweep's parent
        [killed] = [r for r in runs if r.data.params.get("lr") == str(lost.params["lr"])]
        # ended KILLED by whichever noticed first: the sweeper (the trial failed) or the run's MLflow helper
        # (its training process was gone)
        reasons = (f"trial #{lost.number} failed: NodeDiedError", "the training process ended without reporting")
        assert killed.info.status == "KILLED" and killed.data.tags["error"].startswith(reasons), killed.data.tags
    finally:
        if sweep.poll() is None:
            sweep.kill()


def test_submitit_runs_trials_as_jobs_of_their_own(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    submitit = ["hydra/launcher=submitit_local", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=3"]
    proc = run_cli(*sweep_command(tmp_path, storage, *submitit, "logger=none", steps=str(SHORT)), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    assert [t.state for t in trials] == [States.COMPLETE] * 3
    assert len({t.user_attrs[JOB_ATTR] for t in trials}) == 3  # a process each
    assert sorted(p.name for p in (tmp_path / "sweep").glob("[0-9]*")) == ["0", "1", "2"]
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))) == 3  # submitit's own logs


def test_trials_of_a_sweeper_that_stopped_its_heartbeat_fail_on_any_machine(tmp_path, postgres):
    """Another machine's sweeper died while its trial ran: its heartbeat went stale. One of
    a live sweeper elsewhere (beating) and one from before heartbeats stay RUNNING."""
    storage = optuna.storages.RDBStorage(postgres, heartbeat_interval=1, grace_period=4)
    study = optuna.create_study(study_name="elsewhere", storage=storage, direction="maximize")
    dead, alive, unknown = (study.ask() for _ in range(3))
    for trial, owner in ((dead, "node-7:4242"), (alive, "node-8:4243"), (unknown, "node-9:4244")):
        trial.set_user_attr("abe_sweeper", owner)
    storage.record_heartbeat(dead._trial_id)
    time.sleep(5)  # 4 beats of 1 s missed
    done = threading.Event()

    def beat():  # the live sweeper elsewhere
        while not done.wait(0.5):
            storage.record_heartbeat(alive._trial_id)

    threading.Thread(target=beat, daemon=True).start()
    try:
        proc = run_cli(
            *sweep_command(tmp_path, postgres, "logger=none", "hydra.sweeper.n_trials=1", steps=str(SHORT)),
            "hydra.sweeper.study_name=elsewhere",
            "hydra.sweeper.heartbeat_s=1",
            timeout=300,
        )
    finally:
        done.set()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "marked 1 trial(s) of a stopped sweeper FAIL" in proc.stdout + proc.stderr
    states = [t.state for t in optuna.load_study(study_name="elsewhere", storage=postgres).get_trials()]
    assert states == [States.FAIL, States.RUNNING, States.RUNNING, States.COMPLETE]
