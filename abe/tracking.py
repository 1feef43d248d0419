"""Experiment tracking behind one small interface: MLflow, or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Tracker(Protocol):
    run_id: str | None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def finish(self, result: dict | None, run_dir: Path, status: str) -> None: ...


class NullTracker:
    """`logger=none`: everything stays in the Hydra run dir."""

    run_id = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def finish(self, result: dict | None, run_dir: Path, status: str) -> None:
        pass


def make_tracker(cfg) -> Tracker:
    if cfg.logger.name == "none":
        return NullTracker()
    raise NotImplementedError(cfg.logger.name)
