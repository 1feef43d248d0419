"""abe: continuous-control A2C experiments with Hydra, Tianshou, MLflow and Optuna."""

import os
from pathlib import Path

# Tianshou 2.0.1 JIT-compiles its buffer and GAE helpers with Numba at every process
# start, uncached, which dominates short runs, sweeps and tests. Measured once each,
# the same 200k-step HalfCheetah run (16 envs): with the JIT 36.2 s wall and 7,934
# training steps/s; without it 30.5 s and 7,796 steps/s (1.7% slower), same returns.
# Set NUMBA_DISABLE_JIT=0 to get the JIT back.
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "conf"
