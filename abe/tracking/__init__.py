"""Experiment tracking: the store, the run (in a helper process), the sweep's parent
run, and run lookup. `make_tracker` is the way in."""

from __future__ import annotations

from pathlib import Path

from abe.core.schema import Config
from abe.tracking.mlflow_run import NullTracker, Tracker
from abe.tracking.store import user_tracking_uri


def make_tracker(
    cfg: Config,
    run_dir: Path,
    overrides: list[str],
    device: str,
    parent_run_id: str | None = None,
    resume_run_id: str | None = None,
) -> Tracker:
    """The tracker `cfg.logger` asks for; `resume_run_id` continues that MLflow run.

    MLflow works in a helper process (abe.tracking.helper). With a store the user named
    (a server, PostgreSQL) a run without a parent starts before this returns, so a store
    that refuses it fails the command before training. Other runs start in the background:
    the embedded store, and a run nested under a parent run (a sweep's trial, a seed of a
    K-seed job: its store has just taken the parent), so K seeds' runs start side by side.
    """
    if not cfg.logger.tracking:
        return NullTracker()
    from abe.tracking.helper import BackgroundTracker

    wait = bool(user_tracking_uri(cfg.logger)) and parent_run_id is None
    return BackgroundTracker(cfg, run_dir, overrides, device, parent_run_id, resume_run_id, wait=wait)
