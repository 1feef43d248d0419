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
