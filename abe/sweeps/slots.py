"""Trials without a batch barrier: N slots, each refilled the moment its trial ends.

Hydra's `Launcher.launch(jobs)` returns when every job of the batch has returned, so
batches wait for their slowest (or unpruned) trial. abe launches each trial as a job of
its own, from its own thread, and the sweeper asks for the next trial as soon as any
thread reports: through the launcher's public `launch([one job], idx)` for the ray and
submitit launchers; in this thread for the basic launcher (its jobs run in this process:
one slot). The joblib launcher is the exception (`_joblib`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from abe.core.processes import alive, local_pid
from abe.sweeps.pruning import JOB_ATTR

log = logging.getLogger(__name__)

STOP_WAIT_S = 10.0  # after an interrupt: how long the trials' processes get to end their runs


Launch = Callable[[Sequence[str], int], JobReturn]  # (a trial's overrides, its number) -> its job's return
Heartbeat = tuple[float, Callable[[int], None]]  # (seconds between beats, beat(trial number))


def launcher_kind(config: DictConfig) -> str:
    """basic, joblib, ray, submitit, ...: from the launcher's `_target_` in the config."""
    target = str(config.hydra.launcher.get("_target_", ""))
    return target.rsplit(".", 1)[-1].removesuffix("Launcher").lower() or "basic"


def trial_launcher(
    launcher, config: DictConfig, hydra_context: HydraContext, task_function: TaskFunction
) -> tuple[Launch, int]:
    """How to run one trial as a job from any slot's thread, and how many slots the
    launcher can run at once (the sweeper takes up to hydra.sweeper.n_jobs of them)."""
    kind = launcher_kind(config)
    # The launcher's own "launching 1 job(s), #0 ..." lines, said for every trial: abe says "trial #N" instead.
    logging.getLogger(type(launcher).__module__.rsplit(".", 1)[0]).setLevel(logging.WARNING)
    if kind == "joblib":
        return _joblib(config, hydra_context, task_function), sys.maxsize
    if kind == "basic":
        if int(config.hydra.sweeper.get("n_jobs", 1)) > 1:
            log.warning("the basic launcher runs one trial at a time: use hydra/launcher=joblib for more")
        return _launch_with(launcher), 1
    if kind == "ray":
        _start_ray(config)
    return _launch_with(launcher), sys.maxsize


def _launch_with(launcher) -> Launch:
    def launch(overrides: Sequence[str], number: int) -> JobReturn:
        log.info("trial #%d: %s", number, shown(overrides))
        return launcher.launch([overrides], initial_job_idx=number)[0]

    return launch


def shown(overrides: Sequence[str]) -> str:
    """A trial's overrides as the user wrote them: without Hydra's keys (e.g. the
    `+hydra.job.env_set...` that tell the job its trial)."""
    return " ".join(o for o in filter_overrides(overrides) if not o.lstrip("+~").startswith("hydra."))


def _joblib(config: DictConfig, hydra_context: HydraContext, task_function: TaskFunction) -> Launch:
    """hydra/launcher=joblib: each trial one task on loky's reusable worker processes,
    the pool the joblib launcher itself uses (hydra.launcher.n_jobs workers).

    Why not `launcher.launch([one job])` per slot: the joblib launcher runs its jobs
    with joblib.Parallel, which is not safe to call from several threads at once (one
    call's end shut down the executor under another's running trial, which then hung).
    So each task runs `run_one_job`, which does what the launcher does for a job, with
    Hydra's public job API. tests/cli/test_sweeps.py runs joblib sweeps end to end."""
    from joblib import effective_n_jobs
    from joblib.executor import get_memmapping_executor

    launcher_cfg = config.hydra.launcher
    if launcher_cfg.get("backend") not in (None, "loky"):
        log.warning("hydra.launcher.backend=%s: abe's slots run joblib trials on loky", launcher_cfg.backend)
    workers = effective_n_jobs(launcher_cfg.get("n_jobs", -1))
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    setup_globals()

    def launch(overrides: Sequence[str], number: int) -> JobReturn:
        log.info("trial #%d: %s", number, shown(overrides))
        # joblib's reusable loky pool, the one joblib.Parallel (the launcher's confirmation jobs) reuses;
        # a new one if a killed worker broke the last
        executor = get_memmapping_executor(workers)
        job = executor.submit(
            run_one_job, number, list(overrides), hydra_context, config, task_function, Singleton.get_state()
        )
        return job.result()

    return launch


def run_one_job(
    number: int,
    overrides: list[str],
    hydra_context: HydraContext,
    config: DictConfig,
    task_function: TaskFunction,
    singleton_state,
) -> JobReturn:
    """One job of a sweep in a worker process, as Hydra's launchers run one: its config
    composed from the sweep's with the job's overrides, its own dir, id and number."""
    setup_globals()
    Singleton.set_state(singleton_state)
    job_config = hydra_context.config_loader.load_sweep_config(config, overrides)
    with open_dict(job_config):
        job_config.hydra.job.id = f"{job_config.hydra.job.name}_{number}"
        job_config.hydra.job.num = number
    HydraConfig.instance().set_config(job_config)
    return run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=job_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def _start_ray(config: DictConfig) -> None:
    """Once, here, with the launcher's own `ray.init` settings: the slots' threads would
    race to start Ray in their launches."""
    import ray

    if not ray.is_initialized():
        ray.init(**OmegaConf.to_container(config.hydra.launcher.ray.init, resolve=True))


@dataclass
class Ended:
    """A trial whose launch returned (`job`) or raised (`error`: e.g. its worker was killed)."""

    trial: optuna.Trial
    job: JobReturn | None = None
    error: BaseException | None = None


class Slots:
    def __init__(self, launch: Launch, size: int, heartbeat: Heartbeat | None = None) -> None:
        self.launch, self.size = launch, size
        self.running: dict[int, optuna.Trial] = {}  # by trial number
        self._ended: queue.Queue[Ended] = queue.Queue()
        self._beat = heartbeat[1] if heartbeat else None
        if heartbeat is not None:
            threading.Thread(target=self._beats, args=(heartbeat[0],), name="abe-heartbeat", daemon=True).start()

    def _beats(self, interval: float) -> None:
        """The running trials' heartbeats: a sweeper that stops beating (killed, its machine
        lost) leaves trials that the next sweeper on the study marks FAIL."""
        while True:
            for number in list(self.running):
                with contextlib.suppress(Exception):  # a trial that just ended; a storage hiccup
                    self._beat(number)
            time.sleep(interval)

    @property
    def free(self) -> int:
        return self.size - len(self.running)

    def start(self, trial: optuna.Trial, overrides: Sequence[str]) -> None:
        self.running[trial.number] = trial
        if self._beat is not None:  # its first beat now: a sweeper may die before the next
            self._beat(trial.number)
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
        pids = [local_pid(attrs.get(number, {}).get(JOB_ATTR)) for number in self.running]
        pids = [pid for pid in pids if pid is not None]
        _signal(pids, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while any(map(alive, pids)) and time.monotonic() < deadline:
            time.sleep(0.2)
        _signal([pid for pid in pids if alive(pid)], signal.SIGKILL)
        if "ray" in sys.modules:  # a Ray driver of this sweep (imported only by hydra/launcher=ray)
            import ray

            if ray.is_initialized():
                ray.shutdown()


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
