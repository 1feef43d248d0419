"""Where a trained policy comes from: a checkpoint file, an MLflow run id, or an MLflow
model URI (`models:/name/1`, `runs:/<id>/model`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from abe.commands.hydra_edge import compose, to_config
from abe.core.errors import ConfigError, first_line
from abe.tracking.lookup import RUN_ID, download, get_run, open_store

if TYPE_CHECKING:
    from abe.agent.agent import Agent

# torch, Tianshou and MuJoCo load in the functions that need them: a source that is not
# one is answered before them.


@dataclass
class PolicySource:
    """A loaded policy and what is needed to run it."""

    description: str
    env_id: str
    env_kwargs: dict
    seed: int
    backend: str = "sync"  # the training run's env backend: evaluation runs where training evaluated
    threads: int = 0
    agent: Agent | None = None  # when loaded from a checkpoint
    model: object | None = None  # an exported torch module when loaded from an MLflow model
    run_id: str | None = None  # the MLflow run to log a video to
    video_dir: Path | None = None

    def policy(self, deterministic: bool):
        from abe.training.evaluation import agent_policy, module_policy

        if self.agent is not None:
            return agent_policy(self.agent, deterministic)
        if not deterministic:
            raise ConfigError(
                "--stochastic: an MLflow model holds only the mean action; pass the run id to sample actions"
            )
        return module_policy(self.model)


def open_default_store(tracking_uri: str | None):
    """(MlflowClient, uri): `--tracking-uri`, else $MLFLOW_TRACKING_URI, else the
    embedded store that `logger=mlflow` writes to."""
    return open_store(to_config(compose(["logger=mlflow"])).logger, tracking_uri)


def from_checkpoint(path: Path, run_id: str | None = None, video_dir: Path | None = None) -> PolicySource:
    import torch

    from abe.agent.agent import build_agent
    from abe.agent.checkpoint import checkpoint_config, load_into, read_checkpoint
    from abe.envs.vector import make_vector_env

    state = read_checkpoint(path)
    cfg = checkpoint_config(state)
    # The thread count changes the order of float sums in matmuls; matching training's
    # makes evaluation repeat the training-time eval returns exactly.
    torch.set_num_threads(cfg.trainer.torch_threads)
    envs = make_vector_env(cfg.env.id, 1, "sync", dict(cfg.env.kwargs))
    try:
        agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    finally:
        envs.close()
    load_into(agent, state)
    return PolicySource(
        description=f"checkpoint {path} ({state['env_steps']:,} env steps)",
        env_id=cfg.env.id,
        env_kwargs=dict(cfg.env.kwargs),
        seed=cfg.seed,
        backend=cfg.env.backend,
        threads=cfg.env.threads,
        agent=agent,
        run_id=run_id,
        video_dir=video_dir or path.parent,
    )


def from_run(run_id: str, tracking_uri: str | None) -> PolicySource:
    client, uri = open_default_store(tracking_uri)
    run = get_run(client, run_id, uri)
    checkpoint = download(client, run_id, "checkpoints/last.pt", "checkpoint")
    run_dir = Path(run.data.tags.get("run_dir", ""))
    video_dir = run_dir if run_dir.is_dir() else Path("outputs") / "videos" / run_id
    source = from_checkpoint(checkpoint, run_id=run_id, video_dir=video_dir)
    source.description = f"MLflow run {run_id} ({run.info.run_name}), last checkpoint"
    return source


def from_model_uri(uri: str, tracking_uri: str | None) -> PolicySource:
    client, store = open_default_store(tracking_uri)
    import mlflow.pytorch
    import torch
    from mlflow.exceptions import MlflowException

    try:
        info = mlflow.models.get_model_info(uri)
        model = mlflow.pytorch.load_model(uri)
    except (MlflowException, OSError) as ex:
        raise ConfigError(f"model: cannot load '{uri}' from {store}: {first_line(ex)}") from None
    run = get_run(client, info.run_id, store) if info.run_id else None
    if run is None or "env.id" not in run.data.params:
        raise ConfigError(f"model: '{uri}' was not logged by an abe run (no env.id param on its run)")
    torch.set_num_threads(int(run.data.params.get("trainer.torch_threads", 1)))
    safe_name = re.sub(r"[^\w.-]+", "_", uri.split(":/", 1)[1].strip("/"))
    return PolicySource(
        description=f"MLflow model {uri}",
        env_id=run.data.params["env.id"],
        env_kwargs={},
        seed=int(run.data.params.get("seed", 0)),
        backend=run.data.params.get("env.backend", "sync"),
        threads=int(run.data.params.get("env.threads", 0)),
        model=model.eval(),
        run_id=run.info.run_id,
        video_dir=Path("outputs") / "videos" / safe_name,
    )


def load_source(source: str, tracking_uri: str | None = None) -> PolicySource:
    """Checkpoint path, MLflow model URI or run id, in that order of checking."""
    if source.startswith(("models:/", "runs:/")):
        return from_model_uri(source, tracking_uri)
    if Path(source).exists():
        return from_checkpoint(Path(source))
    if RUN_ID.match(source):
        return from_run(source, tracking_uri)
    raise ConfigError(
        f"source: '{source}' is not a checkpoint file, an MLflow run id (32 hex digits) "
        "or a model URI (models:/NAME/VERSION, runs:/RUN_ID/model)"
    )
