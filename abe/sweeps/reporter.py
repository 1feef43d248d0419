"""The job's side of pruning: report to its Optuna trial at every evaluation, and stop
training (a callback that says stop) when the pruner says so."""

from __future__ import annotations

import os
import socket
import sys

import optuna

from abe.core.errors import TrialEndedElsewhere
from abe.core.result import OBJECTIVE
from abe.core.stats import summarise
from abe.sweeps.pruning import (
    ENV_PRUNE_ON,
    ENV_PRUNER,
    ENV_STORAGE,
    ENV_STUDY,
    ENV_TRIAL,
    FAIL_ATTR,
    JOB_ATTR,
    RAY_NODE_ATTR,
    make_pruner,
)
from abe.sweeps.study import open_storage
from abe.training.callbacks import Callback


class TrialReporter(Callback):
    """Reports the job's statistic over its seeds (of `prune_on`) to its trial after each
    evaluation; says stop when the pruner does. The last evaluation is reported but never
    pruned: training is over, and pruning it would only throw away a finished trial's
    result."""

    def __init__(self, total_steps: int, statistic: str = "mean") -> None:
        self.study = optuna.load_study(
            study_name=os.environ[ENV_STUDY],
            storage=open_storage(os.environ[ENV_STORAGE]),
            pruner=make_pruner(os.environ[ENV_PRUNER], total_steps),
        )
        self.trial = optuna.trial.Trial(self.study, int(os.environ[ENV_TRIAL]))
        self.trial.set_user_attr(JOB_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        if node := _ray_node():
            self.trial.set_user_attr(RAY_NODE_ATTR, node)
        self.total_steps, self.statistic = total_steps, statistic
        self.metric = os.environ.get(ENV_PRUNE_ON, OBJECTIVE)
        self.last_value: float | None = None  # the objective at the last report

    @staticmethod
    def for_this_job(total_steps: int, statistic: str = "mean") -> TrialReporter | None:
        """A reporter when the Optuna sweeper runs this job with a study storage."""
        return TrialReporter(total_steps, statistic) if ENV_TRIAL in os.environ else None

    def on_evaluation(self, trainer, records: list[dict]) -> bool:
        values = [r.get(self.metric, r[OBJECTIVE]) for r in records]  # no finished episode yet: the eval return
        value = summarise(values, self.statistic)
        env_steps = records[0]["env_steps"]
        self.last_value = summarise([r[OBJECTIVE] for r in records], self.statistic)
        try:
            self.trial.report(value, env_steps)
        except optuna.exceptions.UpdateFinishedTrialError:
            raise TrialEndedElsewhere(
                f"trial #{self.trial.number} was already ended in the study: its sweeper died, or another sweeper "
                "failed it while this sweep's heartbeat had stopped (a stopped process, a lost machine); this job stops"
            ) from None
        if env_steps < self.total_steps and self.trial.should_prune():
            self.stop_reason = f"pruned by Optuna at {env_steps:,} env steps ({self.metric} {value:.1f})"
            return False
        return True

    def mark_pruned(self) -> None:
        self.study.tell(self.trial, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)

    def mark_failed(self, reason: str) -> None:
        """The job stopped for good (its sweeper died): the study says so, as MLflow does."""
        self.trial.set_user_attr(FAIL_ATTR, reason)
        self.study.tell(self.trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def _ray_node() -> str | None:
    if "ray" not in sys.modules:  # imported by the Ray worker that runs this job, if any
        return None
    import ray

    if not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()
