"""One tracked run behind one small interface: MLflow, or nothing."""

from __future__ import annotations

import contextlib
import logging
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Protocol

from abe import PROJECT_ROOT
from abe.core.errors import ConfigError, first_line
from abe.core.machine import float_fingerprint
from abe.core.result import JobResult, TrainResult
from abe.core.schema import Config
from abe.core.secrets import mask_secrets
from abe.tracking.store import connect


class Tracker(Protocol):
    run_id: str | None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_model(self, model, input_example) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def finish(
        self, result: TrainResult | JobResult | None, run_dir: Path, status: str, error: str | None = None
    ) -> None: ...


class NullTracker(Tracker):
    """`logger=none`: everything stays in the Hydra run dir (each call is the protocol's no-op)."""

    run_id = None


def _seeds(cfg: Config) -> str:
    return f"s{cfg.seed}" if cfg.n_seeds == 1 else f"seeds{cfg.seed}-{cfg.seed + cfg.n_seeds - 1}"


def flatten(cfg: Config) -> dict[str, str]:
    """The resolved config as dotted keys (`network.width`, `lr`), secrets masked."""
    out: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = mask_secrets(str(node))

    walk(cfg.to_dict(), "")
    return out


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


class MlflowTracker:
    """One MLflow run: params and tags at the start, metrics as training goes, then
    artifacts and a final status (FINISHED, FAILED with the reason, or KILLED)."""

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        overrides: list[str],
        parent_run_id: str | None = None,
        resume_run_id: str | None = None,
        *,
        device: str,
        command: list[str] | None = None,  # what the user ran (default: this process's argv)
    ):
        import mlflow

        self.mlflow = mlflow
        quiet_model_logging()
        client, experiment_id, uri = connect(cfg.logger)
        if resume_run_id:  # the same run goes on (status back to RUNNING)
            run = mlflow.start_run(run_id=resume_run_id)
            self.run_id = run.info.run_id
            if "error" in run.data.tags:  # why it stopped: kept, but no longer an error
                mlflow.set_tag("interrupted", run.data.tags["error"])
                client.delete_tag(self.run_id, "error")
            return
        tags = self._tags(cfg, run_dir, overrides, device, command or [Path(sys.argv[0]).name, *sys.argv[1:]])
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id  # nests the run under its sweep in the UI
        try:
            run = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=cfg.logger.run_name or f"{cfg.env.id}-lr{cfg.lr:g}-g{cfg.gamma:g}-{_seeds(cfg)}",
                tags=tags,
            )
        except Exception as ex:
            raise ConfigError(
                f"logger.tracking_uri: cannot start a run in {mask_secrets(uri)}: {mask_secrets(first_line(ex))}"
            ) from None
        self.run_id = run.info.run_id
        mlflow.log_params(flatten(cfg))

    @staticmethod
    def _tags(cfg: Config, run_dir: Path, overrides: list[str], device: str, command: list[str]) -> dict[str, str]:
        dirty = _git("status", "--porcelain")
        return {
            **{str(k): mask_secrets(str(v)) for k, v in cfg.logger.tags.items()},
            **float_fingerprint(),
            "device": device,
            "git_commit": _git("rev-parse", "HEAD") or "unknown",
            "git_dirty": str(bool(dirty)).lower(),
            "hydra_overrides": mask_secrets(" ".join(overrides)),
            "command": mask_secrets(shlex.join(command)),
            "mlflow.source.name": command[0] if command[0] != "python" else shlex.join(command[:3]),
            "run_dir": str(run_dir.resolve()),
        }

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.mlflow.set_tags(tags)

    def log_model(self, model, input_example) -> None:
        import mlflow.pytorch
        import torch

        # Requirements are given rather than inferred (inference re-imports the model: seconds).
        mlflow.pytorch.log_model(
            model,
            name="model",
            serialization_format="pickle",
            input_example=input_example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )

    @staticmethod
    def warm_up() -> None:
        """What opening a store, starting a run and the first `log_model` cost a process
        (docs/benchmarks.md, "The store imported once"): MLflow's SQL store imported and
        its tables mapped, the git module MLflow reads a commit with, torch, and MLflow's
        one-time setup of saving a model. The helper server does it once, before it forks
        helpers; it opens no connection, which must not cross a fork."""
        import mlflow.pytorch
        import mlflow.store.tracking.sqlalchemy_store
        import numpy as np
        import torch
        from sqlalchemy.orm import configure_mappers

        configure_mappers()
        quiet_model_logging()
        with contextlib.suppress(ImportError):  # GitPython: without it MLflow skips its git tags
            import git  # noqa: F401
        with tempfile.TemporaryDirectory(prefix="abe-warm-up-") as tmp:
            mlflow.pytorch.save_model(
                torch.nn.Linear(1, 1),
                f"{tmp}/model",
                serialization_format="pickle",
                input_example=np.zeros((1, 1), np.float32),
                pip_requirements=["torch"],
            )

    def finish(
        self, result: TrainResult | JobResult | None, run_dir: Path, status: str, error: str | None = None
    ) -> None:
        mlflow = self.mlflow
        try:
            if error:
                mlflow.set_tag("error", mask_secrets(error)[:5000])
            if result is not None:  # staged in one folder: one upload call instead of four
                with tempfile.TemporaryDirectory(prefix="abe-artifacts-") as tmp:
                    staged = Path(tmp)
                    for name in ("result.json", "learning_curve.png"):
                        if (run_dir / name).exists():
                            shutil.copy2(run_dir / name, staged / name)
                    if (run_dir / ".hydra").is_dir():  # the saved configs, passwords in URIs masked
                        (staged / "hydra").mkdir()
                        for path in (p for p in (run_dir / ".hydra").iterdir() if p.is_file()):
                            (staged / "hydra" / path.name).write_text(mask_secrets(path.read_text()))
                    checkpoint = getattr(result, "checkpoint", None)  # a K-seed job's run has none
                    if checkpoint and Path(checkpoint).exists():
                        (staged / "checkpoints").mkdir()
                        shutil.copy2(checkpoint, staged / "checkpoints")
                    mlflow.log_artifacts(str(staged))
        finally:
            mlflow.end_run(status=status)


def quiet_model_logging() -> None:
    """The model is plain torch layers, pickled: it loads with torch alone (abe.agent.export),
    so MLflow's warning about pickled custom code does not apply. Called by the processes
    that track (the helpers, `python -m abe sync`), not by those that load models."""
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
