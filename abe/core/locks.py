"""One process at a time where sqlite cannot cope with more.

Opening a new sqlite store (MLflow's, Optuna's) creates its tables and runs its
migrations, and neither library does that safely from two processes at once: two
sweepers, or two jobs of one sweep, that start together failed with duplicate columns,
broken alembic versions or IntegrityErrors. A lock file next to the database lets one
process open it at a time; opening an existing store under it takes milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_WAIT_S = 120  # how long a process waits for another to finish opening the store


def sqlite_path(url: str) -> Path | None:
    """The database file of a `sqlite:///...` URL (None for other URLs and in-memory ones)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def opening(url: str) -> Iterator[None]:
    """Hold `<database>.lock` while a sqlite store at `url` is opened (no-op for servers)."""
    path = sqlite_path(url)
    if path is None or not path.parent.is_dir():
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} has been locked by another process for {LOCK_WAIT_S} s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
