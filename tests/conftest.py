import os
import subprocess
import sys
from pathlib import Path

import pytest

from abe import PROJECT_ROOT
from abe.cli import compose

# Small budgets that still run every code path (collect, update, evaluate, checkpoint).
TINY = [
    "trainer.total_steps=256",
    "trainer.num_envs=2",
    "trainer.eval_every=128",
    "trainer.eval_episodes=2",
    "trainer.progress_bar=false",
    "logger=none",
]


@pytest.fixture
def make_cfg():
    """The job config `python run.py *overrides` would train with."""
    return lambda *overrides: compose(list(overrides))


def run_cli(*args: str, cwd: Path = PROJECT_ROOT, env: dict | None = None, timeout: int = 300):
    """Run `python run.py ARGS` as a user would; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "run.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def tracked_run(tmp_path_factory):
    """One tiny Pendulum run tracked in an embedded MLflow store: (process, run dir, store)."""
    root = tmp_path_factory.mktemp("tracked")
    run_dir, store = root / "run", root / "store"
    overrides = [o for o in TINY if not o.startswith("logger")]
    proc = run_cli("env=pendulum", "lr=3e-4", "gamma=0.95", *overrides, "logger=mlflow",
                   f"logger.store_dir={store}", f"hydra.run.dir={run_dir}",
                   env={"MLFLOW_TRACKING_URI": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, run_dir, store


def run_module(*args: str, timeout: int = 300):
    """Run `python -m abe ARGS` from the project root."""
    return subprocess.run(
        [sys.executable, "-m", "abe", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
