"""Where a sweep's jobs find its stores, wherever they run.

The sweeper resolves the MLflow tracking store once (`logger.tracking_uri`, else
$MLFLOW_TRACKING_URI, else the embedded store) with its path made absolute, and hands it
to every job in the job's environment (`hydra.job.env_set`): a job on a Ray worker or a
SLURM node, whose working directory and environment are not the sweeper's, then tracks
to the sweep's store and nests its run under the sweep's parent. The Optuna storage's
sqlite path is made absolute for the same reason. A file store that jobs on other
machines may not reach gets one line before the first trial.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from abe.core.locks import sqlite_path
from abe.core.secrets import mask_secrets
from abe.sweeps.slots import launcher_kind
from abe.tracking.store import tracking_uri
from abe.tracking.sweep_parent import logger_config

log = logging.getLogger(__name__)

# Launchers whose jobs may run on other machines.
REMOTE_LAUNCHERS = ("ray", "slurm")


def absolute(url: str) -> str:
    """A sqlite URL with a relative path, made absolute against this working directory."""
    path = sqlite_path(url)
    if path is None or path.is_absolute():
        return url
    _, query, rest = url.partition("?")
    return f"sqlite:///{Path.cwd() / path}{query}{rest}"


def stores_for_jobs(config: DictConfig, optuna_storage: str | None) -> dict[str, str]:
    """The environment every job of this sweep gets: MLFLOW_TRACKING_URI, unless the config
    names the store itself or the URI holds a password (abe copies no secret into a job's
    config; the job then reads its own environment). Warns about file stores a remote
    launcher's jobs may not reach."""
    env, remote = {}, launcher_kind(config) in REMOTE_LAUNCHERS
    logger = config.get("logger") or {}
    if logger.get("name") == "mlflow":
        uri = absolute(tracking_uri(logger_config(config)))
        if mask_secrets(uri) != uri:
            log.warning("the tracking URI holds a password: each job reads it from its own MLFLOW_TRACKING_URI")
        elif not logger.get("tracking_uri"):
            env["MLFLOW_TRACKING_URI"] = uri
        if remote and uri.startswith(("sqlite", "file")):
            log.warning(
                "MLflow store %s is a file on this machine: trials on other machines reach it only through a shared "
                "filesystem; use an MLflow server (logger.tracking_uri=http://HOST:5000)",
                uri,
            )
    if remote and optuna_storage is not None and optuna_storage.startswith("sqlite"):
        log.warning(
            "hydra.sweeper.storage %s is a file on this machine: trials on other machines reach it only through a "
            "shared filesystem; use PostgreSQL (hydra.sweeper.storage=postgresql+psycopg2://USER@HOST/DB)",
            optuna_storage,
        )
    return env
