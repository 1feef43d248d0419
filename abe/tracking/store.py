"""Where runs are stored: the user's tracking URI, or abe's embedded store.

With no setting, runs go to an embedded store (sqlite + an artifact folder) under
`logger.store_dir`, so `mlflow ui` needs no server. MLflow 3.13+ refuses a plain
./mlruns file store without MLFLOW_ALLOW_FILE_STORE, hence sqlite.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from urllib.parse import urlparse

from abe.core.errors import ConfigError, first_line
from abe.core.locks import opening
from abe.core.schema import LoggerConfig
from abe.core.secrets import mask_secrets

URI_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file")


def user_tracking_uri(logger_cfg: LoggerConfig) -> str | None:
    """`logger.tracking_uri`, else $MLFLOW_TRACKING_URI, else None (the embedded store)."""
    return logger_cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def tracking_uri(logger_cfg: LoggerConfig) -> str:
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


def connect(logger_cfg: LoggerConfig):
    """(client, experiment id, uri) for a logger config; creates the experiment (and
    the embedded store) on first use."""
    warnings.filterwarnings("ignore", message=".*noload.*")  # SQLAlchemy 2.1 vs MLflow 3.17
    import mlflow

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating tables"
    uri = tracking_uri(logger_cfg)  # a user's URI was checked by the command before training
    embedded = not user_tracking_uri(logger_cfg)
    if embedded:
        store = Path(logger_cfg.store_dir).resolve()
        try:
            store.mkdir(parents=True, exist_ok=True)
        except OSError as ex:
            raise ConfigError(
                f"logger.store_dir: cannot create '{store}' ({ex.strerror}); pick a writable folder, or logger=none"
            ) from None
    mlflow.set_tracking_uri(uri)
    try:
        with opening(uri):  # a new sqlite store: its tables are made by one process at a time
            client = mlflow.MlflowClient(tracking_uri=uri)
            return (*_experiment(client, logger_cfg.experiment, logger_cfg, embedded), uri)
    except ConfigError:
        raise
    except Exception as ex:  # bad credentials, missing driver, refused connection ...
        raise ConfigError(
            f"logger.tracking_uri: cannot use {mask_secrets(uri)}: {mask_secrets(first_line(ex))}"
        ) from None


def _experiment(client, name: str, logger_cfg: LoggerConfig, embedded: bool) -> tuple:
    """(client, experiment id): the experiment called `name`, made on first use."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return client, found.experiment_id
    artifacts = (Path(logger_cfg.store_dir).resolve() / "artifacts").as_uri() if embedded else None
    try:
        return client, client.create_experiment(name, artifact_location=artifacts)
    except MlflowException:  # created meanwhile by a parallel job
        return client, client.get_experiment_by_name(name).experiment_id
