"""What a training run produces, typed; and the name of the objective sweeps optimise."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from abe.core.files import write_text

OBJECTIVE = "eval/return_mean"  # a seed's final evaluation: the mean return over its episodes
CONFIRMATION_TAG = "abe_confirmation"  # on the MLflow runs of a sweep's confirmation jobs (value: rank): not trials
JOB_OBJECTIVE = "objective"  # a job's `seed_statistic` over its seeds' OBJECTIVE: what sweeps maximise
RESULTS_FILE = "optimization_results.yaml"  # in a sweep dir: the best params, the confirmation
BEST_COMMAND_FILE = "best_command.txt"  # in a sweep dir: the single run that re-trains the winner


def read_results(sweep_dir: Path) -> dict:
    """A sweep dir's RESULTS_FILE ({} before the sweeper wrote it)."""
    import yaml

    path = sweep_dir / RESULTS_FILE
    return (yaml.safe_load(path.read_text()) if path.exists() else None) or {}


@dataclass
class TrainResult:
    """The end of one training run, as written to result.json."""

    env_id: str
    seed: int
    eval_return_mean: float
    eval_return_std: float
    env_steps: int
    updates: int
    wall_time_s: float
    fps: float
    checkpoint: Path
    evaluations: list[dict] = field(default_factory=list)  # one record of metrics per evaluation
    stopped_early: str | None = None  # why training stopped before its budget (a callback said so)
    mlflow_run_id: str | None = None
    schedule: list[list] = field(default_factory=list)  # [env_steps, lr, gamma] points (a schedule, PBT)
    lineage: list[dict] = field(default_factory=list)  # PBT: the copies behind this member's weights

    def to_dict(self) -> dict:
        result = {
            OBJECTIVE: self.eval_return_mean,
            "eval/return_std": self.eval_return_std,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "wall_time_s": self.wall_time_s,
            "fps": self.fps,
            "env_id": self.env_id,
            "seed": self.seed,
            "checkpoint": str(self.checkpoint),
            "evaluations": self.evaluations,
            "mlflow_run_id": self.mlflow_run_id,
        }
        if self.stopped_early:
            result["stopped_early"] = self.stopped_early
        if self.schedule:
            result["schedule"], result["lineage"] = self.schedule, self.lineage
        return result

    def write(self, run_dir: Path) -> Path:
        return write_text(run_dir / "result.json", json.dumps(self.to_dict(), indent=2) + "\n")


@dataclass
class JobResult:
    """A job of K seeds trained together, as written to its result.json (each seed's
    TrainResult is in its own run dir)."""

    statistic: str  # seed_statistic: mean | iqm | lcb
    objective: float  # that statistic over per_seed
    seeds: list[int]
    per_seed: list[float]  # each seed's final OBJECTIVE
    mean: float
    iqm: float
    ci95: tuple[float, float]  # bootstrap interval of the mean
    mlflow_run_id: str | None = None

    def to_dict(self) -> dict:
        return {
            JOB_OBJECTIVE: self.objective,
            "statistic": self.statistic,
            OBJECTIVE: self.mean,
            "eval/return_iqm": self.iqm,
            "ci95": list(self.ci95),
            "seeds": self.seeds,
            "per_seed": self.per_seed,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def write(self, run_dir: Path) -> Path:
        return write_text(run_dir / "result.json", json.dumps(self.to_dict(), indent=2) + "\n")
