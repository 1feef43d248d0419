"""`python -m abe resume RUN_DIR_OR_ID`: continue an interrupted run (Ctrl-C, SIGTERM,
SIGKILL, power loss) from its last checkpoint, in the same run dir and MLflow run."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from abe.agent.checkpoint import job_config, read_checkpoint
from abe.commands.hydra_edge import check_runtime
from abe.commands.sources import open_default_store
from abe.commands.train import Job
from abe.core.errors import ConfigError
from abe.tracking.lookup import RUN_ID, get_run


def find_run_dir(target: str, tracking_uri: str | None) -> Path:
    """A run dir as given, or the one an MLflow run's `run_dir` tag names."""
    if Path(target).is_dir():
        return Path(target)
    if not RUN_ID.match(target):
        raise ConfigError(f"resume: '{target}' is neither a run dir nor an MLflow run id (32 hex digits)")
    client, uri = open_default_store(tracking_uri)
    run_dir = Path(get_run(client, target, uri).data.tags.get("run_dir", ""))
    if not run_dir.is_dir():
        raise ConfigError(f"resume: run {target}'s run dir '{run_dir}' is not on this machine")
    return run_dir


def _log_to(run_dir: Path) -> None:
    """What Hydra sets up for run.py: messages on the console, appended to run.log."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    to_file = logging.FileHandler(run_dir / "run.log")
    to_file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root.addHandler(console)
    root.addHandler(to_file)


def _checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint, or each seed's of a K-seed job (`seed_<n>/`), in seed order."""
    if (run_dir / "checkpoints" / "last.pt").exists():
        return [run_dir / "checkpoints" / "last.pt"]
    seeds = sorted(run_dir.glob("seed_*/checkpoints/last.pt"), key=lambda p: int(p.parent.parent.name[5:]))
    return seeds or [run_dir / "checkpoints" / "last.pt"]  # read_checkpoint names what is missing


def resume(target: str, tracking_uri: str | None = None) -> int:
    run_dir = find_run_dir(target, tracking_uri)
    states = [read_checkpoint(path) for path in _checkpoints(run_dir)]
    cfg = dataclasses.replace(job_config(states[0]), n_seeds=len(states))
    total, done = cfg.trainer.total_steps, min(state["env_steps"] for state in states)
    if done >= total:
        raise ConfigError(f"resume: the run in {run_dir} already finished ({done:,} of {total:,} env steps)")
    if tracking_uri:
        cfg = dataclasses.replace(cfg, logger=dataclasses.replace(cfg.logger, tracking_uri=tracking_uri))
    elif "***" in str(cfg.logger.tracking_uri):
        raise ConfigError("resume: the saved tracking URI has its password masked; pass --tracking-uri")
    check_runtime(cfg)
    _log_to(run_dir)
    job = Job(cfg, run_dir, [], None, resumes=states, resume_run_ids=[s.get("mlflow_run_id") for s in states])
    job.run()
    return 0
