"""A run's tracking messages, kept in its run dir so that a lost tracking server loses nothing.

The helper process (abe.tracking.helper) appends every message the training process
sends it (the start, metrics, tags, the model, the end with its status) to
`RUN_DIR/.tracking/journal.pkl` before it hands the message to MLflow, and deletes the
journal once the run is complete in the store. When the server cannot be reached the
helper stops calling it and only keeps the journal: `python -m abe sync RUN_DIR`
(abe.commands.sync) replays it into the store when the server is back.

Every wait on the server is bounded (`HTTP_BOUNDS`): a call gives up after about
35 s on a host that does not answer and after about 3 s on one that refuses.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
from pathlib import Path

from abe.core.files import WriteFailed, reason

JOURNAL_DIR = ".tracking"
JOURNAL = "journal.pkl"

# MLflow's defaults retry a request 7 times over minutes with a 120 s timeout: a run
# whose server died hung for 9 minutes after training. These bound one call to
# 3 tries of at most 10 s each, 1 s and 2 s apart. A user's own settings win.
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


def bound_http_waits() -> None:
    for name, value in HTTP_BOUNDS.items():
        os.environ.setdefault(name, value)


def journal_path(run_dir: Path) -> Path:
    return Path(run_dir) / JOURNAL_DIR / JOURNAL


class Journal:
    """Append-only: one pickled (kind, args) message after another, flushed each time.
    A journal that cannot be written (no space, no permission) raises WriteFailed, naming
    its path, once; it then keeps nothing more (the run itself goes on to MLflow)."""

    def __init__(self, run_dir: Path):
        self.path = journal_path(run_dir)
        self._file = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("wb")
        except OSError as ex:
            raise WriteFailed(f"cannot write {self.path}: {reason(ex)}") from None

    def append(self, kind: str, args) -> None:
        if self._file is None:
            return
        try:
            pickle.dump((kind, args), self._file)
            self._file.flush()
        except OSError as ex:
            self.close()
            raise WriteFailed(f"cannot write {self.path}: {reason(ex)}") from None

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # a full disk fails the last flush too
                self._file.close()
            self._file = None

    def discard(self) -> None:
        """The run is complete in the store: nothing is left to keep."""
        self.close()
        discard(self.path)


def discard(path: Path) -> None:
    """Delete a journal (and its folder) whose run is complete in the store."""
    with contextlib.suppress(OSError):
        Path(path).unlink(missing_ok=True)
    shutil.rmtree(Path(path).parent, ignore_errors=True)


def read(path: Path) -> list[tuple[str, tuple]]:
    """The messages of a journal; a last message cut short by a crash is dropped."""
    messages = []
    with Path(path).open("rb") as f:
        while True:
            try:
                messages.append(pickle.load(f))
            except (EOFError, pickle.UnpicklingError):
                return messages


def pending(root: Path) -> list[Path]:
    """The journals under `root` (a run dir, or a folder of run dirs such as outputs/)."""
    root = Path(root)
    here = journal_path(root)
    if here.exists():
        return [here]
    return sorted(root.rglob(f"{JOURNAL_DIR}/{JOURNAL}"))


def server_unreachable(ex: BaseException) -> bool:
    """A call failed because the server did not answer, not because it refused the call."""
    import requests

    if isinstance(ex, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    text = str(ex)
    if "error responses" in text:  # urllib3 gave up on a server that answered, with errors (HTTP 5xx)
        return False
    return "API request to" in text and any(
        s in text for s in ("Max retries exceeded", "Connection refused", "timed out", "ConnectionError")
    )
