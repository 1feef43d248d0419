"""Processes that outlive the one that started them: who owns what, and what to do when
the owner is gone.

A sweep's trials and MLflow runs record the process that owns them as `host:pid`; a
later sweeper on this machine tells a live owner from a dead one. A trial's job run by
joblib is a child of the sweeper: if the sweeper is killed outright, its job stops
itself (`stop_when_orphaned`) instead of training on for nobody.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

ENV_SWEEPER_PID = "ABE_SWEEPER_PID"  # given to each job of a sweep (hydra.job.env_set)
ORPHAN_CHECK_S = 1.0  # how often a job looks for its sweeper
ORPHAN_CLEANUP_S = 30.0  # how long it then has to end its runs before its process exits


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def local_pid(owner: str | None) -> int | None:
    """The pid of `host:pid` when the host is this machine."""
    host, _, pid = (owner or "").rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie has ended: only its exit status is left)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except ProcessLookupError:
        return False
    except OSError:  # not ours to signal, or no /proc: it exists
        return True


def is_gone(owner: str | None) -> bool:
    """Whether the process `host:pid` has died: known only on its own machine (one
    elsewhere counts as alive); no owner at all counts as gone."""
    if not owner:
        return True
    pid = local_pid(owner)
    return pid is not None and not alive(pid)


def stop_when_orphaned(parent_pid: int, done: threading.Event, on_orphan: Callable[[], None] | None = None) -> None:
    """When this process is a child of `parent_pid` (a joblib worker of the sweeper),
    watch it: once the parent has died, call `on_orphan` (the job marks its trial FAIL
    first: a quick write that must not wait for the cleanup), interrupt the main thread
    (the job ends its runs KILLED, as on Ctrl-C), give it ORPHAN_CLEANUP_S to set `done`,
    then exit the process."""
    if os.getppid() != parent_pid:
        return

    def watch() -> None:
        while not done.wait(ORPHAN_CHECK_S):
            if os.getppid() != parent_pid:
                log.warning("the sweeper (pid %d) is gone: stopping this trial", parent_pid)
                if on_orphan is not None:
                    with contextlib.suppress(Exception):  # the study may be unreachable too
                        on_orphan()
                _thread.interrupt_main()
                done.wait(ORPHAN_CLEANUP_S)
                os._exit(1)

    threading.Thread(target=watch, name="abe-orphan-watch", daemon=True).start()
