"""abe: continuous-control A2C experiments with Hydra, Tianshou, MLflow and Optuna."""

import os
from pathlib import Path

# Tianshou 2.0.1 JIT-compiles its buffer and GAE helpers with Numba at every process
# start, uncached: for A2C's small batches that costs more than it saves, and it
# dominates short runs, sweeps and tests (docs/benchmarks.md, "Numba's JIT"); the
# returns are the same. Set NUMBA_DISABLE_JIT=0 to get the JIT back.
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "conf"
