"""Experiment tracking behind one small interface: MLflow, or nothing.

With no setting, runs go to an embedded store (sqlite + an artifact folder) under
`logger.store_dir`, so `mlflow ui` needs no server. MLflow 3.13+ refuses a plain
./mlruns file store without MLFLOW_ALLOW_FILE_STORE, hence sqlite.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from abe import PROJECT_ROOT
from abe.errors import ConfigError

URI_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file")
_PASSWORD_IN_URI = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?P<tail>@)")


def mask_secrets(text: str) -> str:
    """`postgresql://user:pw@host/db` -> `postgresql://user:***@host/db`."""
    return _PASSWORD_IN_URI.sub(r"\g<head>***\g<tail>", text)


class Tracker(Protocol):
    run_id: str | None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_model(self, model, input_example) -> None: ...

    def finish(self, result: dict | None, run_dir: Path, status: str, error: str | None = None) -> None: ...


class NullTracker:
    """`logger=none`: everything stays in the Hydra run dir."""

    run_id = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_model(self, model, input_example) -> None:
        pass

    def finish(self, result: dict | None, run_dir: Path, status: str, error: str | None = None) -> None:
        pass


def flatten(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as dotted keys (`network.width`, `lr`), secrets masked."""
    out: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = mask_secrets(str(node))

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def user_tracking_uri(logger_cfg: DictConfig) -> str | None:
    """`logger.tracking_uri`, else $MLFLOW_TRACKING_URI, else None (the embedded store)."""
    return logger_cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def tracking_uri(logger_cfg: DictConfig) -> str:
    uri = user_tracking_uri(logger_cfg)
    if uri:
        return str(uri)
    store = Path(logger_cfg.store_dir).resolve()
    return f"sqlite:///{store / 'mlflow.db'}"


def check_tracking_uri(uri: str) -> None:
    """Fail in seconds, before training, on a malformed URI or an unreachable server."""
    scheme = urlparse(uri).scheme.split("+")[0]
    allowed = "sqlite:///path/to/mlflow.db, http(s)://host:port, postgresql://user@host/db"
    if scheme not in URI_SCHEMES:
        raise ConfigError(f"logger.tracking_uri: unsupported URI '{mask_secrets(uri)}'; allowed: {allowed}")
    if scheme in ("http", "https"):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
        except requests.RequestException as ex:
            reason = type(ex).__name__
            raise ConfigError(
                f"logger.tracking_uri: no MLflow server answers at {mask_secrets(uri)} ({reason}); "
                "start one with `mlflow server`, or use logger.tracking_uri=null for the embedded store"
            ) from None
    if scheme == "sqlite":
        path = Path(uri.split(":///", 1)[-1])
        if not path.parent.is_dir():
            raise ConfigError(f"logger.tracking_uri: folder '{path.parent}' of the sqlite store does not exist")


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

    def __init__(self, cfg: DictConfig, run_dir: Path, overrides: list[str]):
        warnings.filterwarnings("ignore", message=".*noload.*")  # SQLAlchemy 2.1 vs MLflow 3.17
        import mlflow

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating tables"
        self.mlflow = mlflow
        uri = tracking_uri(cfg.logger)  # checked by abe.config.validate
        embedded = not user_tracking_uri(cfg.logger)
        if embedded:
            Path(cfg.logger.store_dir).resolve().mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        try:
            experiment_id = self._experiment_id(cfg, embedded)
            run = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=cfg.logger.run_name or f"{cfg.env.id}-lr{cfg.lr:g}-g{cfg.gamma:g}-s{cfg.seed}",
                tags=self._tags(run_dir, overrides),
            )
        except Exception as ex:  # bad credentials, missing driver, refused connection ...
            first = str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__
            raise ConfigError(f"logger.tracking_uri: cannot use {mask_secrets(uri)}: {mask_secrets(first)}") from None
        self.run_id = run.info.run_id
        mlflow.log_params(flatten(cfg))

    def _experiment_id(self, cfg: DictConfig, embedded: bool) -> str:
        from mlflow.exceptions import MlflowException

        client = self.mlflow.MlflowClient()
        found = client.get_experiment_by_name(cfg.logger.experiment)
        if found is not None:
            return found.experiment_id
        artifacts = Path(cfg.logger.store_dir).resolve() / "artifacts"
        try:
            return client.create_experiment(
                cfg.logger.experiment, artifact_location=artifacts.as_uri() if embedded else None
            )
        except MlflowException:  # created meanwhile by a parallel job
            return client.get_experiment_by_name(cfg.logger.experiment).experiment_id

    @staticmethod
    def _tags(run_dir: Path, overrides: list[str]) -> dict[str, str]:
        dirty = _git("status", "--porcelain")
        return {
            "git_commit": _git("rev-parse", "HEAD") or "unknown",
            "git_dirty": str(bool(dirty)).lower(),
            "hydra_overrides": mask_secrets(" ".join(overrides)),
            "command": mask_secrets(shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])),
            "run_dir": str(run_dir.resolve()),
        }

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def log_model(self, model, input_example) -> None:
        import mlflow.pytorch
        import torch

        # Plain torch layers, pickled: loads with torch alone (see abe.export), so
        # MLflow's warning about pickled custom code does not apply; requirements are
        # given rather than inferred (inference re-imports the model: seconds).
        quiet = logging.getLogger("mlflow.pytorch")
        level, quiet.level = quiet.level, logging.ERROR
        try:
            mlflow.pytorch.log_model(
                model, name="model", serialization_format="pickle", input_example=input_example,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
        finally:
            quiet.setLevel(level)

    def finish(self, result: dict | None, run_dir: Path, status: str, error: str | None = None) -> None:
        mlflow = self.mlflow
        try:
            if error:
                mlflow.set_tag("error", mask_secrets(error)[:5000])
            if result is not None:
                for name in ("result.json", "learning_curve.png"):
                    if (run_dir / name).exists():
                        mlflow.log_artifact(str(run_dir / name))
                if (run_dir / ".hydra").is_dir():
                    mlflow.log_artifacts(str(run_dir / ".hydra"), artifact_path="hydra")
                if Path(result["checkpoint"]).exists():
                    mlflow.log_artifact(result["checkpoint"], artifact_path="checkpoints")
        finally:
            mlflow.end_run(status=status)


def make_tracker(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Tracker:
    if cfg.logger.name == "none":
        return NullTracker()
    return MlflowTracker(cfg, run_dir, overrides)
