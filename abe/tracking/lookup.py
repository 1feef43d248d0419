"""Finding runs and their artifacts in a store."""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import warnings
from pathlib import Path

from abe.core.errors import ConfigError
from abe.core.schema import LoggerConfig
from abe.tracking.store import tracking_uri as resolve_uri
from abe.tracking.store import user_tracking_uri

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def open_store(logger_cfg: LoggerConfig, tracking_uri: str | None):
    """(MlflowClient, uri) on `tracking_uri`, else $MLFLOW_TRACKING_URI, else the
    embedded store of `logger_cfg`; one line if that store does not exist yet."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # tiny files, noisy bars
    import mlflow

    if tracking_uri:
        logger_cfg = dataclasses.replace(logger_cfg, tracking_uri=tracking_uri)
    uri = resolve_uri(logger_cfg)
    if not user_tracking_uri(logger_cfg) and not Path(uri.split(":///", 1)[1]).exists():
        raise ConfigError(f"no MLflow store at {uri}; train a run first or pass --tracking-uri")
    warnings.filterwarnings("ignore", message=".*noload.*")  # SQLAlchemy 2.1 vs MLflow 3.17
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri), uri


def get_run(client, run_id: str, uri: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"run id: no run '{run_id}' in {uri}") from None


def download(client, run_id: str, artifact: str, what: str) -> Path:
    from mlflow.exceptions import MlflowException

    try:
        return Path(client.download_artifacts(run_id, artifact, tempfile.mkdtemp(prefix="abe-")))
    except (MlflowException, OSError):
        raise ConfigError(f"run {run_id} has no {what} (artifact '{artifact}')") from None
