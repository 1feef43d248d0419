"""abe: continuous-control A2C experiments with Hydra, Tianshou, MLflow and Optuna."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "conf"
