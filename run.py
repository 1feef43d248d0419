"""Train abe's continuous A2C agent: `python run.py [overrides]`, sweeps with `-m`.

Returns the job's objective (the final `eval/return_mean`, or `seed_statistic` over
its seeds), so any Hydra sweeper can optimise it.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from abe.commands.hydra_edge import launch


# The one `_target_` abe's config names (hydra.callbacks); Hydra 1.4 warns about, and
# Hydra 1.5 refuses, a target that no execution whitelist names.
@hydra.main(
    config_path="conf", config_name="config", execution_whitelist=["abe.tracking.sweep_parent.MlflowSweepCallback"]
)
def main(cfg: DictConfig) -> float:
    # torch, Tianshou and MLflow load here, after the command line passed its checks
    from abe.commands.train import run_job

    return run_job(cfg)


if __name__ == "__main__":
    launch(main)
