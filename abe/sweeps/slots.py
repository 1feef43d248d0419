"""Trials without a batch barrier: N slots, each refilled the moment its trial ends.

Hydra's `Launcher.launch(jobs)` returns when every job of the batch has returned, so
hydra-optuna-sweeper's batches wait for their slowest (or unpruned) trial. abe launches
each trial as a job of its own, from its own thread, and the sweeper asks for the next
trial as soon as any thread reports: through `launcher.launch([one job])` for the ray
and submitit launchers, through joblib's (loky) executor directly for joblib (`_joblib`).
The basic launcher runs the job in the sweeper's process: one slot, in this thread.
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
from pathlib import Path

import optuna
from hydra.core.utils import JobReturn, filter_overrides

from abe.sweeps.pruning import JOB_ATTR

log = logging.getLogger(__name__)

STOP_WAIT_S = 10.0  # after an interrupt: how long the trials' processes get to end their runs


Launch = Callable[[Sequence[str], int], JobReturn]  # (a trial's overrides, its number) -> its job's return


# The launchers' own "launching 1 job(s), #0 ..." lines, said for every trial: abe says "trial #N" instead.
QUIET_LAUNCHER_LOGS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_joblib_launcher",
    "hydra_plugins.hydra_ray_launcher",
    "hydra_plugins.hydra_submitit_launcher",
)


def trial_launcher(launcher, n_jobs: int) -> tuple[Launch, int]:
    """How to run one trial as a job of `launcher` from any slot's thread, and how many
    slots it takes: `n_jobs`, but one for the basic launcher (its jobs run in this process)."""
    kind = type(launcher).__name__
    slots = n_jobs
    if kind == "BasicLauncher" and n_jobs > 1:
        log.warning("the basic launcher runs one trial at a time: use hydra/launcher=joblib for %d", n_jobs)
        slots = 1
    log.info("%d slot(s): the next trial starts when one ends", slots)
    for name in QUIET_LAUNCHER_LOGS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if kind == "JoblibLauncher":
        return _joblib(launcher), slots
    if kind == "RayLauncher":
        _start_ray(launcher)

    def launch(overrides: Sequence[str], number: int) -> JobReturn:
        log.info("trial #%d: %s", number, shown(overrides))
        return launcher.launch([overrides], initial_job_idx=number)[0]

    return launch, slots


def shown(overrides: Sequence[str]) -> str:
    """A trial's overrides as the user wrote them: without Hydra's keys (e.g. the
    `+hydra.job.env_set...` that tell the job its trial)."""
    return " ".join(o for o in filter_overrides(overrides) if not o.lstrip("+~").startswith("hydra."))


def _joblib(launcher) -> Launch:
    """Jobs on loky's worker processes, one `submit` per trial. (joblib.Parallel, which
    the joblib launcher calls, is not safe to call from several threads at once: one
    call's end shut down the executor under another's running trial, which then hung.)"""
    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals
    from hydra_plugins.hydra_joblib_launcher._core import execute_job
    from joblib import effective_n_jobs
    from joblib.executor import get_memmapping_executor

    setup_globals()
    workers = effective_n_jobs(launcher.joblib.get("n_jobs", -1))
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)

    def launch(overrides: Sequence[str], number: int) -> JobReturn:
        log.info("trial #%d: %s", number, shown(overrides))
        # joblib's own reusable executor (Parallel, which runs the confirmation jobs, reuses it); a
        # new one if a dead worker broke the last
        executor = get_memmapping_executor(workers)
        job = executor.submit(
            execute_job,
            number,
            overrides,
            launcher.hydra_context,
            launcher.config,
            launcher.task_function,
            0,
            Singleton.get_state(),
            False,
        )
        return job.result()

    return launch


def _start_ray(launcher) -> None:
    """Once, here: the slots' threads would race to ray.init. A killed trial FAILs: Ray's
    default would re-run its task up to 3 times, in the same job dir."""
    from hydra_plugins.hydra_ray_launcher._launcher_util import start_ray
    from omegaconf import OmegaConf, open_dict, read_write

    with read_write(launcher.ray_cfg), open_dict(launcher.ray_cfg):
        launcher.ray_cfg.remote.setdefault("max_retries", 0)
    start_ray(OmegaConf.create(OmegaConf.to_container(launcher.ray_cfg.init, resolve=True)))


@dataclass
class Ended:
    """A trial whose launch returned (`job`) or raised (`error`: e.g. its worker was killed)."""

    trial: optuna.Trial
    job: JobReturn | None = None
    error: BaseException | None = None


class Slots:
    def __init__(self, launch: Launch, size: int, storage=None, heartbeat_s: float = 0) -> None:
        self.launch, self.size = launch, size
        self.running: dict[int, optuna.Trial] = {}  # by trial number
        self._ended: queue.Queue[Ended] = queue.Queue()
        self._storage = storage if heartbeat_s else None
        if self._storage is not None:
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
        if self._storage is not None:  # its first beat now: a sweeper may die before the next
            self._storage.record_heartbeat(trial._trial_id)
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
        """After an interrupt: end the running trials' processes on this machine, SIGTERM
        first (each ends its MLflow run KILLED, as on Ctrl-C), SIGKILL after STOP_WAIT_S
        (their helpers then end the runs KILLED), then drop a Ray driver (Ray stops this
        job's tasks on every node). Their launches' results are not awaited: a job
        interrupted mid-way can leave its result unpicklable."""
        if self.size == 1 or not self.running:
            return
        attrs = {t.number: t.user_attrs for t in study.get_trials(deepcopy=False)}
        pids = [_local_pid(attrs.get(number, {}).get(JOB_ATTR)) for number in self.running]
        pids = [pid for pid in pids if pid is not None]
        _signal(pids, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        _signal([pid for pid in pids if _alive(pid)], signal.SIGKILL)
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()


def _local_pid(where: str | None) -> int | None:
    host, _, pid = (where or "").rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
