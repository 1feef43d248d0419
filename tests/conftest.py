import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from abe import PROJECT_ROOT
from abe.commands.hydra_edge import compose, to_config

# Small budgets that still run every code path (collect, update, evaluate, checkpoint).
TINY = [
    "trainer.total_steps=256",
    "trainer.num_envs=2",
    "trainer.eval_every=128",
    "trainer.eval_episodes=2",
    "trainer.progress_bar=false",
    "logger=none",
]


def random_policy(envs, seed: int):
    """The baseline a trained agent must beat: uniform random actions."""
    envs.action_space.seed(seed)
    return lambda raw_obs: envs.action_space.sample()


@pytest.fixture
def make_cfg():
    """The typed job config `python run.py *overrides` would train with."""
    return lambda *overrides: to_config(compose(list(overrides)))


# pytest-xdist runs each file whole on one worker (--dist loadfile); the files that take
# longest start first, so the short ones fill the workers in at the end instead of one
# long file running alone (xdist's own order, by number of tests, is switched off in
# pyproject.toml). From the suite's --durations, longest first.
LONGEST_FIRST = (
    "cli/test_faults.py",
    "system/test_cluster.py",
    "cli/test_optuna.py",
    "cli/test_readme.py",
    "system/test_learning.py",
    "cli/test_commands.py",
    "cli/test_tracking.py",
    "cli/test_resume.py",
    "cli/test_pbt_sweep.py",
    "cli/test_sweeps.py",
    "unit/test_bench.py",
    "cli/test_run_cli.py",
    "system/test_mlflow_ui.py",
    "unit/test_training.py",
    "unit/test_pbt.py",
    "cli/test_bad_input.py",
    "unit/test_config.py",
    "unit/test_fast.py",
)


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0].removeprefix("tests/")
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: a file's tests keep their order


def pytest_sessionstart(session):
    # No usage telemetry from the tests' MLflow clients (nor its session id in the environment).
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    # Libraries that set environment variables once per process, when first imported or
    # used: done here, so `environment_unchanged` sees only what tests do. (torch's first
    # optimizer imports torch._dynamo: TORCHINDUCTOR_CACHE_DIR; envpool: MPLBACKEND,
    # MPLCONFIGDIR, PYGAME_HIDE_SUPPORT_PROMPT; mlflow: a telemetry session id; tianshou
    # imports pettingzoo: SDL_AUDIODRIVER.)
    import envpool  # noqa: F401
    import mlflow  # noqa: F401
    import tianshou.algorithm  # noqa: F401
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


@pytest.fixture(autouse=True)
def environment_unchanged():
    """No test may leave the process environment changed for the tests after it (a
    MUJOCO_GL set in pytest's own process once broke every later subprocess test)."""
    before = dict(os.environ)
    yield
    after = dict(os.environ)
    changed = sorted(
        k for k in before.keys() | after.keys() if before.get(k) != after.get(k) and not k.startswith("PYTEST_")
    )
    for key in changed:  # put it back, so one offender fails alone
        if key in before:
            os.environ[key] = before[key]
        else:
            del os.environ[key]
    assert not changed, f"the test changed environment variables {changed}; use monkeypatch or a subprocess"


# The working directory of the commands the tests run, as a user's would be: anything a
# command writes to a default relative path (outputs/...) lands here, never in the
# outputs/ of the checkout the tests run from.
USER_DIR = Path(tempfile.mkdtemp(prefix="abe-tests-cwd-"))


def run_cli(*args: str, cwd: Path = USER_DIR, env: dict | None = None, timeout: int = 300):
    """Run `python run.py ARGS` as a user would; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "run.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the process name (state, ppid, pgrp, session, ...);
    None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def start_cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    """Start `python run.py ARGS` in the background as a terminal would: a session of its own
    and SIGINT at its default (a shell without job control, CI's, starts commands with SIGINT
    ignored, and Python then never raises KeyboardInterrupt). stderr is a text pipe."""
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "run.py"), *args],
        cwd=USER_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def tracked_run(tmp_path_factory):
    """One tiny Pendulum run tracked in an embedded MLflow store: (process, run dir, store)."""
    root = tmp_path_factory.mktemp("tracked")
    run_dir, store = root / "run", root / "store"
    overrides = [o for o in TINY if not o.startswith("logger")]
    proc = run_cli(
        "env=pendulum",
        "lr=3e-4",
        "gamma=0.95",
        *overrides,
        "logger=mlflow",
        f"logger.store_dir={store}",
        f"hydra.run.dir={run_dir}",
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, run_dir, store


def run_module(*args: str, timeout: int = 300, env: dict | None = None):
    """Run `python -m abe ARGS` from the project root (`env`: extra variables)."""
    return subprocess.run(
        [sys.executable, "-m", "abe", *args],
        cwd=USER_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "MLFLOW_TRACKING_URI": "", **(env or {})},
    )


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL server (Debian's) on 127.0.0.1, for this test session only.

    Runs as the `postgres` user when the tests run as root (PostgreSQL refuses root).
    Yields a SQLAlchemy URL of an empty database.
    """
    import glob
    import shutil
    import socket
    import tempfile

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    assert bins, "Debian's postgresql package is needed (tests/setup.sh installs it)"
    bindir = Path(bins[-1])
    # Not under pytest's tmp dir: it is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="abe-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def pg(*args):
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    pg(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
    pg(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(root / "server.log"),
        "-o",
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1",
        "start",
    )
    try:
        pg(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "abe")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/abe"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 over a sqlite store in `folder`, in a process
    group of its own: started, killed (SIGKILL, as a crash) and started again on the
    same store and port."""

    def __init__(self, folder: Path):
        self.folder, self.port = Path(folder), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "MlflowServer":
        import requests

        self.folder.mkdir(parents=True, exist_ok=True)
        command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port"]
        command += [str(self.port), "--workers", "1", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}"]
        command += ["--artifacts-destination", str(self.folder / "artifacts")]
        # Without MLflow 3's job runner: seven huey consumer processes that abe never uses.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(f"{self.url}/health", timeout=2).ok:
                    return self
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or too busy to answer in 2 s
                pass
            assert self.process.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.3)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
        self.process = None
