"""One MLflow parent run per Hydra multirun, one nested child run per job.

A Hydra callback: `on_multirun_start` runs in the launching process and creates the
parent run; it writes the parent's id into the sweep dir, where every job (in this
process, or in a joblib worker process) finds it and nests its own run under it.
`on_multirun_end` puts the sweep's headline on the parent (the confirmed best, else the
search's best), with a plot of the objective against `lr` and `gamma`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from abe.core.errors import NoTrialFinished
from abe.core.processes import is_gone, this_process
from abe.core.result import BEST_COMMAND_FILE, CONFIRMATION_TAG, JOB_OBJECTIVE, OBJECTIVE, RESULTS_FILE, read_results
from abe.core.schema import LoggerConfig

log = logging.getLogger(__name__)

PARENT_ID_FILE = "mlflow_parent_run_id"
SWEEPER_TAG = "abe.sweeper"  # host:pid of the process that runs the sweep
_launched_parents: list[tuple[str, str]] = []  # (tracking uri, run id) made by this process


def parent_run_id(sweep_dir: str | Path) -> str | None:
    path = Path(sweep_dir) / PARENT_ID_FILE
    return path.read_text().strip() if path.exists() else None


def _tracking(config: DictConfig) -> bool:
    return config.get("logger", {}).get("name") == "mlflow"


def logger_config(config: DictConfig) -> LoggerConfig:
    """The sweep's logger settings, typed (Hydra hands callbacks its raw config)."""
    return LoggerConfig.from_dict(OmegaConf.to_container(config.logger, resolve=True), "logger.")


class MlflowSweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if not _tracking(config):
            return
        from abe.tracking.store import connect

        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        client, experiment_id, uri = connect(logger_config(config))
        end_abandoned_sweeps(config, client, experiment_id)
        overrides = " ".join(config.hydra.overrides.task)
        tags = {"sweep_dir": str(sweep_dir.resolve()), "hydra_overrides": overrides, "abe.sweep": "parent"}
        run = client.create_run(
            experiment_id,
            run_name=f"sweep-{sweep_dir.parent.name}-{sweep_dir.name}",
            tags={**tags, SWEEPER_TAG: this_process()},
        )
        (sweep_dir / PARENT_ID_FILE).write_text(run.info.run_id)
        _launched_parents.append((uri, run.info.run_id))
        log.info("MLflow sweep run %s (%s)", run.info.run_id, config.logger.experiment)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if not _tracking(config):
            return
        parent = parent_run_id(config.hydra.sweep.dir)
        if parent is None:
            return
        from abe.tracking.store import connect

        client, _, uri = connect(logger_config(config))
        stopping = sys.exc_info()[1]  # Hydra calls this on its way out of an interrupted sweep too
        if stopping is not None and not isinstance(stopping, NoTrialFinished):
            if (uri, parent) in _launched_parents:
                killed = isinstance(stopping, KeyboardInterrupt)
                reason = None if killed else f"{type(stopping).__name__}: {stopping}"[:500]
                end_unfinished_parents("KILLED" if killed else "FAILED", reason)
            return
        try:
            left = end_running_runs(config, Path(config.hydra.sweep.dir), "the sweep ended while this run was RUNNING")
            if left:
                log.warning("the sweep ended with %d MLflow run(s) RUNNING: marked KILLED", left)
            best = summarise_sweep(client, parent, Path(config.hydra.sweep.dir))
            if best is None:  # every trial failed (or was pruned): the sweep found nothing
                client.set_tag(parent, "error", "no trial finished; see the trials' runs for why")
            client.set_terminated(parent, "FINISHED" if best is not None else "FAILED")
        except Exception as ex:
            client.set_tag(parent, "error", f"{type(ex).__name__}: {ex}"[:5000])
            client.set_terminated(parent, "FAILED")
            raise
        finally:
            if (uri, parent) in _launched_parents:
                _launched_parents.remove((uri, parent))


def summarise_sweep(client, parent: str, sweep_dir: Path) -> str | None:
    """The sweep's headline onto the parent: the confirmed best (the configuration
    `best_command.txt` re-trains, scored on held-out seeds) when the sweep confirmed its
    picks, else the search's best trial; the search's best is kept beside it under
    `search_best_*`. Plus the objective plot and the sweeper's files (runs tagged
    `abe_confirmation` are not trials)."""
    from abe.core.plots import sweep_plot

    parent_run = client.get_run(parent)
    runs = client.search_runs(
        [parent_run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent}'",
        max_results=10_000,
    )
    children = [c for c in runs if CONFIRMATION_TAG not in c.data.tags]
    finished = [c for c in children if c.info.status == "FINISHED" and _value(c) is not None]
    client.set_tag(parent, "sweep_trials", str(len(children)))
    client.set_tag(parent, "sweep_failed", str(sum(c.info.status == "FAILED" for c in children)))
    client.set_tag(parent, "sweep_pruned", str(sum(c.data.tags.get("optuna_state") == "PRUNED" for c in children)))
    if not finished:
        return None
    search_best = max(finished, key=_value)
    client.set_tag(parent, "search_best_run_id", search_best.info.run_id)
    client.log_metric(parent, "search_best_value", _value(search_best))
    headline = _confirmed_best(runs, sweep_dir)
    if headline is None:
        # Under the children's own metric name, so the runs table and charts compare the
        # sweep's best value with single runs in the same column.
        metric = JOB_OBJECTIVE if JOB_OBJECTIVE in search_best.data.metrics else OBJECTIVE
        headline = (search_best, metric, _value(search_best), "the search's best trial (no confirmation)")
    best, metric, value, what = headline
    client.log_metric(parent, metric, value)
    client.set_tag(parent, "best_run_id", best.info.run_id)
    client.set_tag(parent, "best_is", what)
    for key in ("lr", "gamma", "seed", "env.id"):
        if key in best.data.params:
            client.log_param(parent, f"best.{key}", best.data.params[key])
    points = [(float(c.data.params["lr"]), float(c.data.params["gamma"]), _value(c)) for c in finished]
    if len(points) > 1:  # a PBT sweep has one job: its members' plot is pbt_population.png
        client.log_artifact(parent, str(sweep_plot(points, sweep_dir / "sweep_objective.png")))
    # what the sweeper wrote: its plots, best params, the re-train command
    written = [
        RESULTS_FILE,
        BEST_COMMAND_FILE,
        "confirmation.md",
        "confirmation.png",
        "pbt_population.png",
    ]
    for name in [*sorted(p.name for p in sweep_dir.glob("optuna_*.png")), *written]:
        if (sweep_dir / name).exists():
            client.log_artifact(parent, str(sweep_dir / name))
    return best.info.run_id  # the headline run; None above when no trial finished


def _confirmed_best(runs: list, sweep_dir: Path) -> tuple | None:
    """(run, metric, value, what) of the confirmation's winner: its K-seed job's run (rank 1)
    and its held-out mean, from what the sweeper wrote; None without a confirmation."""
    rows = read_results(sweep_dir).get("confirmation") or []
    winner = [c for c in runs if c.data.tags.get(CONFIRMATION_TAG) == "1"]
    if not rows or not winner:
        return None
    row = rows[0]
    label = row.get("label", f"trial #{row['trial']}")
    what = (
        f"the confirmed best: {label}, mean over held-out seeds {row['seeds'][0]}-{row['seeds'][-1]}; "
        "best_command.txt re-trains it"
    )
    return winner[0], OBJECTIVE, float(row["mean"]), what


def _value(run) -> float | None:
    """A trial's objective: a K-seed job's statistic over its seeds, or a run's final eval return."""
    metrics = run.data.metrics
    return metrics.get(JOB_OBJECTIVE, metrics.get(OBJECTIVE))


def end_unfinished_parents(status: str = "KILLED", reason: str | None = None) -> None:
    """A sweep that stops before `on_multirun_end` (Ctrl-C, SIGTERM: KILLED; an error:
    FAILED with the reason) ends this process's parent runs with that status."""
    if not _launched_parents:
        return
    import mlflow

    for uri, run_id in _launched_parents:
        client = mlflow.MlflowClient(tracking_uri=uri)
        # Trials whose process was killed with the sweep (joblib's workers are, with their
        # MLflow helpers) cannot end their own runs: the parent's process ends them.
        experiment = client.get_run(run_id).info.experiment_id
        where = f"tags.mlflow.parentRunId = '{run_id}' and attributes.status = 'RUNNING'"
        for child in client.search_runs([experiment], filter_string=where):
            _end(client, child.info.run_id, status, "the sweep was stopped while this trial ran")
        _end(client, run_id, status, reason)
    _launched_parents.clear()


def _end(client, run_id: str, status: str, reason: str | None) -> None:
    if reason:
        client.set_tag(run_id, "error", reason[:5000])
    client.set_terminated(run_id, status)


def end_running_runs(config: DictConfig, run_dir: Path, reason: str, status: str = "KILLED") -> int:
    """End the RUNNING MLflow runs made in `run_dir` or below it (a trial's job dir: its
    run, its seeds' nested runs) with `status` and `reason`: runs whose process was
    killed (a loky worker stops its whole pool) cannot end themselves. Returns how many."""
    if not _tracking(config):
        return 0
    from abe.tracking.store import connect

    client, experiment_id, _ = connect(logger_config(config))
    base = str(Path(run_dir).resolve()).replace("'", "\\'")
    running = [
        run
        for where in (f"tags.run_dir = '{base}'", f"tags.run_dir LIKE '{base}/%'")
        for run in client.search_runs(
            [experiment_id], filter_string=f"{where} and attributes.status = 'RUNNING'", max_results=10_000
        )
    ]
    for run in running:
        _end(client, run.info.run_id, status, reason)
    return len(running)


def end_abandoned_sweeps(config: DictConfig, client, experiment_id: str) -> None:
    """Sweeps of this experiment whose sweeper died outright (SIGKILL, a lost machine: known
    on this machine only) left their parent run, and maybe trials, RUNNING: end them KILLED."""
    parents = client.search_runs(
        [experiment_id], filter_string="tags.`abe.sweep` = 'parent' and attributes.status = 'RUNNING'"
    )
    for parent in parents:
        owner = parent.data.tags.get(SWEEPER_TAG)
        if owner is None or not is_gone(owner):
            continue
        reason = f"its sweeper ({owner}) died before the sweep ended"
        end_running_runs(config, Path(parent.data.tags["sweep_dir"]), reason)
        _end(client, parent.info.run_id, "KILLED", reason)
        log.warning("MLflow sweep run %s: %s; marked KILLED with its running trials", parent.info.run_id, reason)
