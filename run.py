"""Train abe's continuous A2C agent: `python run.py [overrides]`, sweeps with `-m`.

Returns the final `eval/return_mean`, so any Hydra sweeper can optimise it.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from abe.commands.train import launch, run_job


@hydra.main(config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    return run_job(cfg)


if __name__ == "__main__":
    launch(main)
