"""Trials without a batch barrier: N slots, each refilled the moment its trial ends.

Hydra's `Launcher.launch(jobs)` returns when every job of the batch has returned, so
hydra-optuna-sweeper's batches wait for their slowest (or unpruned) trial. abe launches
each trial as a batch of one, from its own thread, and the sweeper asks for the next
trial as soon as any thread reports. Launchers that run jobs in other processes (joblib,
ray, submitit) do not mind being called from several threads; the basic launcher runs
the job in this process, so it gets one slot, run in this thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from hydra.core.utils import JobReturn

from abe.sweeps.pruning import JOB_ATTR

log = logging.getLogger(__name__)

STOP_WAIT_S = 30.0  # after an interrupt: how long the trials' processes get to end their runs


@dataclass
class Ended:
    """A trial whose launch returned (`job`) or raised (`error`: e.g. its worker was killed)."""

    trial: optuna.Trial
    job: JobReturn | None = None
    error: BaseException | None = None


class Slots:
    def __init__(
        self, launch: Callable[[Sequence[str], int], JobReturn], size: int, storage=None, heartbeat_s: float = 0
    ) -> None:
        self.launch, self.size = launch, size
        self.running: dict[int, optuna.Trial] = {}  # by trial number
        self._ended: queue.Queue[Ended] = queue.Queue()
        if storage is not None and heartbeat_s:
            beat = threading.Thread(target=self._beat, args=(storage, heartbeat_s), name="abe-heartbeat", daemon=True)
            beat.start()

    def _beat(self, storage, interval: float) -> None:
        """The running trials' heartbeats: a sweeper that stops beating (killed, its machine
        lost) leaves trials that the next sweeper on the study marks FAIL."""
        while True:
            for trial in list(self.running.values()):
                with contextlib.suppress(Exception):  # a trial that just ended; a storage hiccup
                    storage.record_heartbeat(trial._trial_id)
            time.sleep(interval)

    @property
    def free(self) -> int:
        return self.size - len(self.running)

    def start(self, trial: optuna.Trial, overrides: Sequence[str]) -> None:
        self.running[trial.number] = trial
        if self.size == 1:  # in this thread: a Ctrl-C reaches the job as it always did
            self._run(trial, overrides)
            return
        name = f"abe-trial-{trial.number}"
        # A daemon: an interrupted sweep must not wait at exit for a launch to return.
        threading.Thread(target=self._run, args=(trial, overrides), name=name, daemon=True).start()

    def _run(self, trial: optuna.Trial, overrides: Sequence[str]) -> None:
        try:
            self._ended.put(Ended(trial, job=self.launch(overrides, trial.number)))
        except Exception as ex:
            self._ended.put(Ended(trial, error=ex))

    def next_ended(self) -> Ended:
        """Blocks until a running trial ends; a Ctrl-C still gets through."""
        while True:
            try:
                ended = self._ended.get(timeout=0.5)
            except queue.Empty:
                continue
            self.running.pop(ended.trial.number, None)
            return ended

    def stop(self, study: optuna.Study) -> None:
        """After an interrupt: SIGTERM the running trials' processes on this machine (each
        ends its MLflow run KILLED, as on Ctrl-C), wait for them, then drop a Ray driver
        (Ray then stops this job's tasks on every node)."""
        if self.size == 1 or not self.running:
            return
        attrs = {t.number: t.user_attrs for t in study.get_trials(deepcopy=False)}
        for number in self.running:
            _terminate(attrs.get(number, {}).get(JOB_ATTR))
        deadline = time.monotonic() + STOP_WAIT_S
        while self.running and time.monotonic() < deadline:
            try:
                self.running.pop(self._ended.get(timeout=0.5).trial.number, None)
            except queue.Empty:
                continue
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()


def _terminate(where: str | None) -> None:
    host, _, pid = (where or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(pid), signal.SIGTERM)
