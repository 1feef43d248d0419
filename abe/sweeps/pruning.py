"""Pruning's settings, shared by the sweeper and its jobs: the pruners, what trials are
compared on, and how the sweeper tells each job its trial (abe.sweeps.reporter is the
job's side)."""

from __future__ import annotations

import optuna

from abe.core.result import OBJECTIVE

PRUNERS = ("median", "percentile", "hyperband", "none")
PRUNE_ON = ("train/episode_return", OBJECTIVE)
# How the sweeper tells each job its trial (hydra.job.env_set): see abe.sweeps.search.
ENV_TRIAL, ENV_STUDY, ENV_STORAGE, ENV_PRUNER, ENV_PRUNE_ON = (
    "ABE_OPTUNA_TRIAL_ID",
    "ABE_OPTUNA_STUDY",
    "ABE_OPTUNA_STORAGE",
    "ABE_OPTUNA_PRUNER",
    "ABE_OPTUNA_PRUNE_ON",
)

# Where a trial's job runs, as host:pid: the sweeper stops it there when interrupted.
JOB_ATTR = "abe_job_process"
FAIL_ATTR = "abe_fail_reason"  # why a trial failed, in one line
RAY_NODE_ATTR = "abe_ray_node"  # the Ray node, when the trial runs as a Ray task (hydra/launcher=ray)


def make_pruner(spec: str, total_steps: int = 0) -> optuna.pruners.BasePruner:
    """`median:W` / `percentile:W:K` / `hyperband` / `none`.

    median and percentile wait for 3 finished trials and for W x total_steps env steps
    of each trial (pruning on early HalfCheetah evaluations stopped the best trial:
    docs/lab-notes.md, "Sweep pruning"); then, at each report, median stops a trial
    below the median of the finished trials at that step, percentile one outside their
    top K (a share: 0.25 = the top quarter goes on)."""
    name, _, rest = spec.partition(":")
    warmup, _, keep = rest.partition(":")
    warmup_steps = int(float(warmup or 0) * total_steps)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warmup_steps, interval_steps=1)
    if name == "percentile":  # Optuna's percentile is the share kept, in percent
        return optuna.pruners.PercentilePruner(100 * float(keep), n_startup_trials=3, n_warmup_steps=warmup_steps)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()
