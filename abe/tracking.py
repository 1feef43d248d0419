"""Experiment tracking behind one small interface: MLflow, or nothing.

With no setting, runs go to an embedded store (sqlite + an artifact folder) under
`logger.store_dir`, so `mlflow ui` needs no server. MLflow 3.13+ refuses a plain
./mlruns file store without MLFLOW_ALLOW_FILE_STORE, hence sqlite.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from abe import PROJECT_ROOT
from abe.errors import ConfigError, first_line

URI_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file")
_PASSWORD_IN_URI = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?P<tail>@)")


def mask_secrets(text: str) -> str:
    """`postgresql://user:pw@host/db` -> `postgresql://user:***@host/db`."""
    return _PASSWORD_IN_URI.sub(r"\g<head>***\g<tail>", text)


class Tracker(Protocol):
    run_id: str | None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_model(self, model, input_example) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def finish(self, result: dict | None, run_dir: Path, status: str, error: str | None = None) -> None: ...


class NullTracker:
    """`logger=none`: everything stays in the Hydra run dir."""

    run_id = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_model(self, model, input_example) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
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


def masked_copy(folder: Path, target: Path) -> Path:
    """`folder`'s text files copied into `target` with passwords in URIs masked."""
    for path in folder.iterdir():
        if path.is_file():
            (target / path.name).write_text(mask_secrets(path.read_text()))
    return target


def package_versions() -> dict[str, str]:
    """Tags that explain why a reproduction on another machine may differ."""
    from importlib.metadata import version

    packages = ("torch", "numpy", "gymnasium", "mujoco", "tianshou")
    return {"versions.python": sys.version.split()[0], **{f"versions.{p}": version(p) for p in packages}}


class MlflowTracker:
    """One MLflow run: params and tags at the start, metrics as training goes, then
    artifacts and a final status (FINISHED, FAILED with the reason, or KILLED)."""

    def __init__(self, cfg: DictConfig, run_dir: Path, overrides: list[str], parent_run_id: str | None = None,
                 resume_run_id: str | None = None, *, device: str):
        import mlflow

        self.mlflow = mlflow
        client, experiment_id, uri = self.connect(cfg)
        if resume_run_id:  # the same run goes on (status back to RUNNING)
            run = mlflow.start_run(run_id=resume_run_id)
            self.run_id = run.info.run_id
            if "error" in run.data.tags:  # why it stopped: kept, but no longer an error
                mlflow.set_tag("interrupted", run.data.tags["error"])
                client.delete_tag(self.run_id, "error")
            return
        tags = self._tags(cfg, run_dir, overrides, device)
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id  # nests the run under its sweep in the UI
        try:
            run = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=cfg.logger.run_name or f"{cfg.env.id}-lr{cfg.lr:g}-g{cfg.gamma:g}-s{cfg.seed}",
                tags=tags,
            )
        except Exception as ex:
            raise ConfigError(f"logger.tracking_uri: cannot start a run in {mask_secrets(uri)}: {_first_line(ex)}") from None
        self.run_id = run.info.run_id
        mlflow.log_params(flatten(cfg))

    @staticmethod
    def connect(cfg: DictConfig):
        """(client, experiment id, uri) for `cfg.logger`; creates the experiment (and the
        embedded store) on first use."""
        warnings.filterwarnings("ignore", message=".*noload.*")  # SQLAlchemy 2.1 vs MLflow 3.17
        import mlflow
        from mlflow.exceptions import MlflowException

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating tables"
        uri = tracking_uri(cfg.logger)  # a user's URI was checked by abe.config.validate
        embedded = not user_tracking_uri(cfg.logger)
        if embedded:
            store = Path(cfg.logger.store_dir).resolve()
            try:
                store.mkdir(parents=True, exist_ok=True)
            except OSError as ex:
                raise ConfigError(f"logger.store_dir: cannot create '{store}' ({ex.strerror}); "
                                  "pick a writable folder, or logger=none") from None
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(tracking_uri=uri)
        name = cfg.logger.experiment
        try:
            found = client.get_experiment_by_name(name)
            if found is not None:
                return client, found.experiment_id, uri
            artifacts = (Path(cfg.logger.store_dir).resolve() / "artifacts").as_uri() if embedded else None
            try:
                return client, client.create_experiment(name, artifact_location=artifacts), uri
            except MlflowException:  # created meanwhile by a parallel job
                return client, client.get_experiment_by_name(name).experiment_id, uri
        except ConfigError:
            raise
        except Exception as ex:  # bad credentials, missing driver, refused connection ...
            raise ConfigError(f"logger.tracking_uri: cannot use {mask_secrets(uri)}: {_first_line(ex)}") from None

    @staticmethod
    def _tags(cfg: DictConfig, run_dir: Path, overrides: list[str], device: str) -> dict[str, str]:
        dirty = _git("status", "--porcelain")
        return {
            **{str(k): mask_secrets(str(v)) for k, v in (cfg.logger.get("tags") or {}).items()},
            **package_versions(),
            "device": device,
            "git_commit": _git("rev-parse", "HEAD") or "unknown",
            "git_dirty": str(bool(dirty)).lower(),
            "hydra_overrides": mask_secrets(" ".join(overrides)),
            "command": mask_secrets(shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])),
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
        with _no_pickle_warning():
            mlflow.pytorch.log_model(
                model, name="model", serialization_format="pickle", input_example=input_example,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )

    @staticmethod
    def warm_up_model_logging() -> None:
        """Import torch and do MLflow's one-time setup of saving a model: the first
        `log_model` of a process took 0.339 s here, later ones 0.035 s. The helper
        process (abe.tracking_helper) does this while training runs."""
        import mlflow.pytorch
        import numpy as np
        import torch

        with _no_pickle_warning(), tempfile.TemporaryDirectory(prefix="abe-warm-up-") as tmp:
            mlflow.pytorch.save_model(torch.nn.Linear(1, 1), f"{tmp}/model", serialization_format="pickle",
                                      input_example=np.zeros((1, 1), np.float32), pip_requirements=["torch"])

    def finish(self, result: dict | None, run_dir: Path, status: str, error: str | None = None) -> None:
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
                    if (run_dir / ".hydra").is_dir():
                        masked_copy(run_dir / ".hydra", _folder(staged / "hydra"))  # passwords masked
                    if Path(result["checkpoint"]).exists():
                        shutil.copy2(result["checkpoint"], _folder(staged / "checkpoints"))
                    mlflow.log_artifacts(str(staged))
        finally:
            mlflow.end_run(status=status)


@contextlib.contextmanager
def _no_pickle_warning():
    """The model is plain torch layers, pickled: it loads with torch alone (see
    abe.export), so MLflow's warning about pickled custom code does not apply."""
    quiet = logging.getLogger("mlflow.pytorch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        yield
    finally:
        quiet.setLevel(level)


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def make_tracker(
    cfg: DictConfig, run_dir: Path, overrides: list[str], parent_run_id: str | None = None,
    resume_run_id: str | None = None,
) -> Tracker:
    """The tracker `cfg.logger` asks for; `resume_run_id` continues that MLflow run.

    MLflow works in a helper process (abe.tracking_helper). With a store the user named
    (a server, PostgreSQL) the run starts before this returns, so a store that refuses
    it fails the command before training; the embedded store starts in the background.
    """
    if cfg.logger.name == "none":
        return NullTracker()
    from abe.tracking_helper import BackgroundTracker

    wait = bool(user_tracking_uri(cfg.logger))
    return BackgroundTracker(cfg, run_dir, overrides, parent_run_id, resume_run_id, wait=wait)


def _first_line(ex: Exception) -> str:
    return mask_secrets(first_line(ex))
